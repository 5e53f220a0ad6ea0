"""Model families. Each subpackage exposes ``Config`` (frozen dataclass) and a model class that
implements the protocol in :mod:`sciflow.models.base`."""

from sciflow.models.base import LossOutput, SciflowModel

__all__ = ["LossOutput", "SciflowModel"]
