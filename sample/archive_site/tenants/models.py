from django.db import models


class TenantPublication(models.Model):
    """A publication of one tenant. Each tenant's files live under its own django-storages `location`
    ("acme/"), which is not stored in the column: the column holds "icons/acme-news.png", the S3 key is
    "acme/icons/acme-news.png"."""

    tenant = models.CharField(max_length=63)
    slug = models.SlugField()
    icon = models.FileField(upload_to="icons/", null=True, blank=True)

    class Meta:
        ordering = ["tenant", "slug"]
        constraints = [models.UniqueConstraint(fields=["tenant", "slug"], name="tenants_unique_tenant_slug")]

    def __str__(self) -> str:
        return f"{self.tenant}/{self.slug}"
