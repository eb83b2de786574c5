"""The mosn-proxyv2 pipeline: build, package, publish, image and the kind proof."""
