"""One adapter per platform, over a shared transport and auth layer."""
