"""The WAL archive: object stores, the archive format, the archiver, restore and retention (issue 5)."""
