"""Configuration dataclasses (``ptycho.config.config``) and YAML loading (``ptycho.config.files``)."""
