"""Stand-ins for the systems the adapter talks to, for the demo, labs and tests.

Everything here is written from the protocol references, never from the adapter's own codecs:
a misunderstanding shared by both sides must not be able to pass the tests.

- `broker`: a private mosquitto on a free loopback port.
- `edgecore`: KubeEdge EdgeCore v1.23.1 devicetwin behaviour on the MQTT EventBus.
- `device`: a mapper-like simulated device that reports values and follows desired values.
- `mep`: EdgeGallery's MEP (mepauth, the Kong gateway, mepserver), one module per part.
- `kubeapi`: a Kubernetes API server on loopback (the device CRDs, core/v1, apps/v1,
  metrics.k8s.io) and the edge cluster behind it (controllers, scheduler, EdgeCore's edged,
  metrics-server), for the tests and the demo's MECM half; see its README.md.
- `usermgmt`: EdgeGallery's user-mgmt, signing the accessTokens an AppLCM plugin verifies.
- `pki`: a throwaway CA and RSA server certificate, as the MEPM's TLS secret holds them.
"""
