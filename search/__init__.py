"""tfautocompress.search."""
