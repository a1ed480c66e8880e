"""Staging uploads: local files into the primary bucket, where the live path takes over.

Two sources, one rule: a file is PUT into the primary bucket under a key the live path already knows, and
nothing else is written. normalize, replicate and link then canonicalize, mirror and relink it exactly as
they do a Django upload, so the invariants hold: upload never writes the CDN bucket or a row (I1, I3),
never overwrites, never deletes (I2, I5).

- a staging tree (`downloads/<slug>/google_favicon/icon.png`, nested at any depth): every file is named by
  the media map's staging patterns; each slug's image is picked per field (pattern order, then the first
  readable image), and an audit manifest (CSV) decides which slugs may go in at all;
- MEDIA_ROOT: rows whose file column names a key the primary bucket does not hold, and whose file is on
  the local disk, get that file under that very key. A row whose local file is missing is reported, never
  cleared.

"Already there" is S3's own checksum, compared without downloading: the ETag (a single-part upload's is the
MD5 of the bytes, a multipart one's the MD5 of the part MD5s, computed here with the transfer config's part
size) under the key itself, or under its canonical key once the live path has moved it there. That is also
what makes a run resumable: an object becomes visible only when its PUT (or CompleteMultipartUpload)
succeeds, so a second run skips exactly what landed and redoes what did not.

The modules, each importing only those above it: outcomes (Outcome, Item, Summary, BadInput), tree (walking
the local tree), fingerprints (size, MD5, the predicted ETag, the sniffed content type), manifest (the audit
CSV), report (the CSV report), uploader (present / conflict / upload, and the Uploader that runs the tasks),
staging (the staging prefix, classify, one task per field and slug) and mediaroot (one task per key a row
names). This package re-exports what callers use; a test that patches a name patches it in the module that
looks it up (e.g. `mediacanon.upload.fingerprints._open_binary`).
"""

from mediacanon.core.mediamap import StagingManifest
from mediacanon.upload.fingerprints import SNIFF_BYTES, Fingerprint, fingerprint, same_checksum, sniff_content_type
from mediacanon.upload.manifest import Manifest, parse_manifest, read_manifest
from mediacanon.upload.mediaroot import media_root_path, media_root_tasks
from mediacanon.upload.outcomes import SUMMARY_ORDER, BadInput, Item, Outcome, Summary, display_path
from mediacanon.upload.report import REPORT_COLUMNS, CsvReport
from mediacanon.upload.staging import Candidate, classify, staging_prefix, staging_tasks
from mediacanon.upload.tree import LocalFile, walk
from mediacanon.upload.uploader import Decision, Uploader, UploadJob

__all__ = [
    "REPORT_COLUMNS",
    "SNIFF_BYTES",
    "SUMMARY_ORDER",
    "BadInput",
    "Candidate",
    "CsvReport",
    "Decision",
    "Fingerprint",
    "Item",
    "LocalFile",
    "Manifest",
    "Outcome",
    "StagingManifest",
    "Summary",
    "UploadJob",
    "Uploader",
    "classify",
    "display_path",
    "fingerprint",
    "media_root_path",
    "media_root_tasks",
    "parse_manifest",
    "read_manifest",
    "same_checksum",
    "sniff_content_type",
    "staging_prefix",
    "staging_tasks",
    "walk",
]
