"""A Django site whose file fields name their uploads by the media map (mediacanon.django.canonical_upload_to)."""
