"""tfautocompress.callbacks."""
