"""The SCWS application data model: resources, realms and card applications."""
