# mypy: disallow-subclassing-any=False
# (Django ships no type hints here: models.Model is Any to mypy)
from __future__ import annotations

from typing import Any

from django.core.files.storage import FileSystemStorage
from django.core.validators import FileExtensionValidator
from django.db import models

from ledger.storage import archive_storage, documents_storage


def contract_path(instance: Any, filename: str) -> str:
    raise AssertionError("mediacanon init must never call an upload_to callable")


class Customer(models.Model):
    """A unique SlugField not named 'slug', a non-unique one, a db_column and an upload_to without its '/'."""

    handle = models.SlugField(max_length=80, unique=True)
    code = models.SlugField()
    avatar = models.ImageField(upload_to="avatars", max_length=200, db_column="avatar_key", blank=True)

    class Meta:
        db_table = "crm_customers"


class Contract(models.Model):
    """No slug at all; a callable upload_to; a field on another bucket through a callable storage."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE)
    scan = models.FileField(upload_to=contract_path, max_length=255)
    signed_copy = models.FileField(upload_to="signed/%Y/%m/", storage=documents_storage)

    class Meta:
        db_table = "crm_contracts"


class Invoice(models.Model):
    """Two fields on the same storage instance and upload_to: each needs include patterns of its own."""

    number = models.CharField(max_length=20, primary_key=True, db_column="invoice_no")
    slug = models.SlugField(unique=True)
    pdf = models.FileField(upload_to="invoices/", storage=archive_storage)
    receipt = models.FileField(upload_to="invoices/", storage=archive_storage)
    scan = models.FileField(
        upload_to="invoices/scans/", storage=archive_storage, validators=[FileExtensionValidator(["pdf", "TIFF"])]
    )


class Note(models.Model):
    """Still on the local disk (FileSystemStorage)."""

    slug = models.SlugField(unique=True)
    attachment = models.FileField(upload_to="notes/", storage=FileSystemStorage(location="/nonexistent/media"))
