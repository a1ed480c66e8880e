from django.contrib import admin

from archive_site.archive.models import PublicationSource


@admin.register(PublicationSource)
class PublicationSourceAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "icon", "masthead")
    search_fields = ("slug", "name")
