"""Tools built on the SDK: the ``otel-telemetry`` command, the demo server, ``top`` and the generators of
``docs/`` and ``collector-config/``. Nothing at run time imports this package.
"""
