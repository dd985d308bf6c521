{
  "targets": [
    {
      "target_name": "kt_splice",
      "sources": ["kt_splice.c", "kt_lane.c", "kt_route.c", "kt_ring.c", "kt_lane_napi.c", "kt_timer.c", "kt_peek.c", "kt_relay.c", "kt_relay_napi.c", "kt_mux.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror"],
      "conditions": [
        ["OS!='linux'", { "type": "none", "sources": [] }]
      ]
    }
  ]
}
