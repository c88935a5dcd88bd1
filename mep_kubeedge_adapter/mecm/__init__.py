"""The KubeEdge plugin for EdgeGallery's MECM: a gRPC ``AppLCM`` server (SPEC §7)."""
