"""mediacanon: canonical media keys for Django in S3, its CDN mirror and the database, kept in agreement."""
