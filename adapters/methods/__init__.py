"""One module per attribution method; each registers itself with ``@register``."""
