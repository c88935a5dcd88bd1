"""mep-kubeedge-adapter: KubeEdge device twins as EdgeGallery MEP (ETSI MEC 011) services."""

__version__ = "0.1.0"
