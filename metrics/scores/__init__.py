"""One module per score (or family of scores); each registers itself with ``@register``."""
