"""The pure core: key naming, the media map and the project's errors. No I/O, no AWS, no database."""
