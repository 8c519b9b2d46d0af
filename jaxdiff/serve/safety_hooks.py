"""The server's safety objects from its flags: the watermark and the content filter of
:mod:`jaxdiff.safety`."""


def watermark(key: int):
    """The invisible watermark with ``key`` (None when key < 0: no mark)."""
    if key < 0:
        return None
    from jaxdiff.safety.watermark import Watermark

    return Watermark(key=key)


def content_filter(blocked_words, blocked_classes, classifier_dir):
    """A ContentFilter, or None when nothing is blocked."""
    if not blocked_words and not blocked_classes:
        return None
    from jaxdiff.safety import content_filter as cf

    classifier = cf.classifier_from_dir(classifier_dir) if blocked_classes else None
    return cf.ContentFilter(
        blocked_words=tuple(blocked_words),
        blocked_classes=tuple(blocked_classes),
        classifier=classifier,
    )
