"""Export: a trained bundle as a zip that runs with MONAI and PyTorch alone (``bundle``), from the config
templates in ``resources/``; and the import of such a zip."""
