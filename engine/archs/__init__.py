"""One module per architecture, registered by general.architecture."""
