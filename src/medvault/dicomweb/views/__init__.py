"""DICOMweb (PS3.18) views, one module per service: ``qido``, ``stow``, ``wado`` (WADO-RS
instances, metadata, frames, bulk data), ``rendered`` (WADO-RS rendered and thumbnails) and
``wado_uri``; ``resources`` answers the paths that serve two of them, ``base`` holds what
they share. Thin: parsing here, negotiation in ``dicomweb.negotiation``, the work in
selectors and services."""
