"""KubeEdge: EdgeCore's MQTT EventBus and the devices.kubeedge.io CRDs."""
