"""Stage publish: aptly, the signed and atomically switched tree, hand-offs, serving."""
