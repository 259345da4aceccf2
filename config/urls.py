from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Pass-through authentication"
admin.site.site_title = "PTA admin"
admin.site.index_title = "Administration"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("agents.urls")),
    path("", include("signin.urls")),
]
