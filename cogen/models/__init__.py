from .transformer import MODEL_SIZES, CogenTransformer

__all__ = ["CogenTransformer", "MODEL_SIZES"]
