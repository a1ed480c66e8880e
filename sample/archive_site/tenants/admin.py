from django.contrib import admin

from archive_site.tenants.models import TenantPublication


@admin.register(TenantPublication)
class TenantPublicationAdmin(admin.ModelAdmin):
    list_display = ("tenant", "slug", "icon")
    list_filter = ("tenant",)
