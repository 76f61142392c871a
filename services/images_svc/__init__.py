"""The images service: content store, layers, image records, import/load/save."""
