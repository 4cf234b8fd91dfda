"""The byte-level transformer's settings and vocabulary, shared by its numpy scoring
(`transformer`) and its torch training (`transformer_torch`)."""

from __future__ import annotations

from dataclasses import dataclass, field

BOS = 256  # the begin token, after the 256 byte values
VOCAB = 257
LN_EPS = 1e-5


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes and training settings of the byte-level transformer (saved in config.json)."""

    d_model: int = field(default=48, metadata={"help": "width of the residual stream"})
    n_layers: int = field(default=2, metadata={"help": "transformer blocks"})
    n_heads: int = field(default=4, metadata={"help": "attention heads (divide d_model)"})
    d_ff: int = field(default=128, metadata={"help": "width of each block's MLP"})
    window: int = field(default=64, metadata={
        "help": "positions (bytes) each position attends to, itself included; the stream "
                "state holds window - 1 cached positions per layer"})
    fold_confusables: bool = field(default=True, metadata={
        "help": "map Cyrillic/Greek look-alike letters to Latin before reading"})
    max_train_bytes: int = field(default=256, metadata={
        "help": "training reads each text's first max_train_bytes bytes (scoring reads all)"})
    epochs: float = field(default=3.0, metadata={
        "help": "passes over the training set, within [min_steps, max_steps] Adam steps"})
    min_steps: int = field(default=40, metadata={"help": "fewest Adam steps"})
    max_steps: int = field(default=1200, metadata={
        "help": "most Adam steps (bounds training time on large sets)"})
    batch_size: int = field(default=32, metadata={"help": "texts per Adam step"})
    lr: float = field(default=3e-3, metadata={
        "help": "peak AdamW learning rate (warm-up, then linear decay to a tenth)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    class_weight: str | None = field(default="balanced", metadata={
        "help": "'balanced' weighs each class by n / (2 * n_class); None weighs texts equally"})
    seed: int = field(default=0, metadata={"help": "seed of initialisation and shuffling"})

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "window", "max_train_bytes",
                     "min_steps", "max_steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps ({self.min_steps}) > max_steps ({self.max_steps})")
        if self.epochs <= 0 or self.lr <= 0 or self.weight_decay < 0:
            raise ValueError("epochs and lr must be > 0 and weight_decay >= 0")
        if self.class_weight not in (None, "balanced"):
            raise ValueError(f"class_weight must be 'balanced' or None, got "
                             f"{self.class_weight!r}")

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every weight's name and shape (the safetensors file must hold exactly these)."""
        d, f, h = self.d_model, self.d_ff, self.n_heads
        shapes: dict[str, tuple[int, ...]] = {"emb": (VOCAB, d)}
        for i in range(self.n_layers):
            shapes.update({
                f"h{i}.ln1_g": (d,), f"h{i}.ln1_b": (d,),
                f"h{i}.qkv_w": (d, 3 * d), f"h{i}.qkv_b": (3 * d,),
                f"h{i}.proj_w": (d, d), f"h{i}.proj_b": (d,),
                f"h{i}.rel_bias": (h, self.window),
                f"h{i}.ln2_g": (d,), f"h{i}.ln2_b": (d,),
                f"h{i}.fc_w": (d, f), f"h{i}.fc_b": (f,),
                f"h{i}.out_w": (f, d), f"h{i}.out_b": (d,),
            })
        shapes.update({"lnf_g": (d,), "lnf_b": (d,), "head_w": (2 * d,), "head_b": (1,)})
        return shapes
