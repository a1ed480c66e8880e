from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "archive_site.tenants"
    label = "tenants"
    verbose_name = "Tenant publications"
