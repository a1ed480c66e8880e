from django.db import models


class PublicationSource(models.Model):
    """A newspaper or magazine of the archive, with its masthead and its icon (favicon) in S3."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    masthead = models.ImageField(upload_to="mastheads/", null=True, blank=True)
    icon = models.ImageField(upload_to="icons/", null=True, blank=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name
