{
  "targets": [
    {
      "target_name": "kt_splice",
      "sources": ["kt_splice.c", "kt_accept.c", "kt_peek.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror"],
      "conditions": [
        ["OS!='linux'", { "type": "none", "sources": [] }]
      ]
    }
  ]
}
