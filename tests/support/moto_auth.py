"""A moto server of a test's own that enforces IAM: users with their own access keys and policies.

moto checks no credentials by default: moto/settings.py reads INITIAL_NO_AUTH_ACTION_COUNT (default inf), the number
of requests served before authentication starts (moto/core/authorization.py ActionAuthenticatorMixin). POST
/moto-api/reset-auth with a count (moto/moto_api/_internal/responses.py reset_auth_response) sets it at run time and
zeroes the counter: with "0", every later request is signature-checked and its IAM user's policies evaluated
(moto/iam/access_control.py S3IAMRequest.check_signature, check_action_permitted). Set-up runs before, with any keys.
(moto's bucket policies, moto/s3/responses.py _key_response -> Bucket.get_permission, ignore the Principal: a Deny
there refuses every caller, so the read-only principal is an IAM user here, as on AWS.)
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import boto3


def enable_auth(endpoint_url: str) -> None:
    if not endpoint_url.startswith("http://127.0.0.1:"):
        raise ValueError(f"not a local moto server: {endpoint_url}")
    # text/plain: a form content type would leave moto's request.data empty (HTTP 500)
    headers = {"Content-Type": "text/plain"}
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset-auth", data=b"0", method="POST", headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310  # http on 127.0.0.1 only (checked above)
        assert json.loads(answer.read())["status"] == "ok"


def create_user(endpoint_url: str, name: str, statements: list[dict[str, Any]]) -> dict[str, str]:
    """An IAM user with one inline policy; returns its access key (aws_access_key_id, aws_secret_access_key)."""
    iam = boto3.client("iam", endpoint_url=endpoint_url, region_name="us-east-1")
    iam.create_user(UserName=name)
    document = {"Version": "2012-10-17", "Statement": statements}
    iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
