from __future__ import annotations

from django.db import models

from mediacanon.django import canonical_upload_to


class Publication(models.Model):  # type: ignore[misc]  # no django-stubs: Model is Any
    """A publication whose files arrive under their canonical keys: `icon` names its media map field, `masthead`
    uses the plain form (the model's one field with upload_to=canonical_upload_to)."""

    slug = models.SlugField(unique=True, blank=True)  # blank: a row may get its file before its slug
    icon = models.ImageField(upload_to=canonical_upload_to("canonsite.Publication.icon"), null=True, blank=True)
    masthead = models.ImageField(upload_to=canonical_upload_to, null=True, blank=True)

    def __str__(self) -> str:
        return str(self.slug)
