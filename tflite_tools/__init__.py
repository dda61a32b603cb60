"""tfautocompress.tflite_tools."""
