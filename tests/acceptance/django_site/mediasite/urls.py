# The site serves no pages of its own in the tests: its media URLs point at the CDN.
urlpatterns: list[object] = []
