"""Validated training settings of the VAE."""

import dataclasses
from dataclasses import dataclass

__all__ = ["VAESettings"]


def _check(condition, message):
    if not condition:
        raise ValueError(message)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class VAESettings:
    """Training settings of :func:`hyperspy_vae.vae_anomalies`.

    Every value is checked when the object is made (or changed through
    :meth:`replace`), so a bad setting fails at once with a clear message.

    Parameters
    ----------
    latent_dim : int, default 4
        Size of the latent space (``output_dimension`` of ``vae_anomalies``).
    patch_size : int, default 3
        Side of the square pixel patch the encoder sees (odd).
    hidden_channels : tuple of int, default (16, 32, 32)
        Feature channels of the three convolution stages.
    beta : float, default 1.0
        Weight of the KL term of the loss.
    kl_warmup_steps : int, default 300
        Steps over which the KL weight ramps from 0 to ``beta`` (against
        posterior collapse: the decoder learning to ignore the latent).
    learning_rate : float, default 2e-3
        Adam learning rate.
    batch_size : int, default 128
        Patches per training step.
    max_steps : int, default 1000
        Upper bound of training steps (mini-batches); training usually stops
        long before, when the held-out loss stops improving near its noise
        floor.
    eval_every : int, default 25
        Steps between two evaluations of the held-out loss (proportionally
        fewer where a model learns from fewer pixels than ``batch_size``, as
        on small maps and line scans, which a network memorises fast).
    patience : int, default 2
        Evaluations without improvement before training stops early (the
        best model is kept). Two (50 steps) against four: the same F1 on
        held-out seeds 1003-1004 (13 cases, -0.0004 +- 0.007 per map, no
        clean-map flag either way) in a quarter less time: past its plateau
        the held-out deviance moves by about its own noise from one
        evaluation to the next (0.2 % on a 192 x 192 map).
    validation_fraction : float, default 0.1
        Fraction of the training pixels held out for early stopping.
    trim_fraction : float, default 0.1
        Fraction of the worst-fitting patches of each batch left out of the
        loss: robust training, so rare anomalies do not shape the model.
    max_train_pixels : int, default 20000
        Train on a random subset of at most this many pixels.
    max_channels : int, default 4096
        Most energy channels the model and the scores use: longer spectra are
        binned in energy (adjacent channels summed: still counts).
    max_work : int, default 2**24
        Most pixels times channels scored at full energy resolution: a
        bigger cube is binned in energy until it fits (192 x 192 pixels of
        1312 channels: by 3, to 0.18 eV from 0.06), so the time grows with
        the pixels, not with the channels. A line scan or a map of a few
        thousand pixels keeps every channel. Raise it to keep finer channels.
    max_drift : float, default 2.0
        Largest energy drift of a spectrum searched for when aligning it on
        its reconstruction, in the energy axis' units (eV): spectrometers
        drift 0.1 to 1.5 eV over a map.
    max_encoder_channels : int, default 192
        Most energy channels the encoder sees when ``max_channels`` lets more
        through: the encoder's input is then binned further (the
        reconstruction and the scores keep ``max_channels``).
    inference_batch_size : int, default 1024
        Patches per batch when scoring every pixel.
    n_fits : int, default 3
        Independent fits (pairs of cross-fitted models, each from its own
        seed) whose statistics are averaged before calibration: the scores
        then depend much less on any one fit's seed (on 64 x 64 maps with
        excess noise or plural scattering, the flags of two seeds overlap
        by Jaccard 0.7-0.8 with one fit, 0.8-0.9 with three, on average
        over pairs of seeds; see docs/method.md, "Several fits"), at
        ``n_fits`` times the time. Each pixel's flag frequency over the fits
        is in the results. ``n_fits=1`` is the fastest.
    """

    latent_dim: int = 4
    patch_size: int = 3
    hidden_channels: tuple = (16, 32, 32)
    beta: float = 1.0
    kl_warmup_steps: int = 300
    learning_rate: float = 2e-3
    batch_size: int = 128
    max_steps: int = 1000
    eval_every: int = 25
    patience: int = 2
    validation_fraction: float = 0.1
    trim_fraction: float = 0.1
    max_train_pixels: int = 20000
    max_channels: int = 4096
    max_work: int = 2**24
    max_drift: float = 2.0
    max_encoder_channels: int = 192
    inference_batch_size: int = 1024
    n_fits: int = 3

    def __post_init__(self):
        self.hidden_channels = tuple(self.hidden_channels)
        self.validate()

    def validate(self):
        """Check every setting; raise ``ValueError`` naming the bad one."""
        for name in (
            "latent_dim",
            "patch_size",
            "batch_size",
            "max_steps",
            "eval_every",
            "patience",
            "kl_warmup_steps",
            "max_train_pixels",
            "max_channels",
            "max_work",
            "max_encoder_channels",
            "inference_batch_size",
            "n_fits",
        ):
            value = getattr(self, name)
            _check(
                _is_int(value) and value >= 1,
                f"{name} must be a positive integer, not {value!r}.",
            )
        _check(
            self.patch_size % 2 == 1,
            f"patch_size must be odd (a centre pixel), not {self.patch_size}.",
        )
        _check(
            len(self.hidden_channels) == 3
            and all(_is_int(c) and c >= 1 for c in self.hidden_channels),
            "hidden_channels must be three positive integers, "
            f"not {self.hidden_channels!r}.",
        )
        for name, low, high in (
            ("beta", 0.0, float("inf")),
            ("learning_rate", 0.0, 1.0),
            ("validation_fraction", 0.0, 0.5),
            ("trim_fraction", 0.0, 0.5),
            ("max_drift", 0.0, 1000.0),
        ):
            value = getattr(self, name)
            _check(
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and low <= value <= high,
                f"{name} must be a number in [{low}, {high}], not {value!r}.",
            )
        _check(self.learning_rate > 0, "learning_rate must be positive.")
        _check(
            self.max_channels >= 8 and self.max_encoder_channels >= 8,
            "max_channels and max_encoder_channels must be at least 8.",
        )

    def replace(self, **changes):
        """Return a copy with ``changes`` applied and validated.

        Raises
        ------
        TypeError
            If a name is not a setting.
        ValueError
            If a value is invalid.
        """
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(
                f"Unknown VAE setting(s) {unknown}; valid settings are {sorted(known)}."
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """Return the settings as a JSON-serialisable dictionary."""
        d = dataclasses.asdict(self)
        d["hidden_channels"] = list(d["hidden_channels"])
        return d

    @classmethod
    def from_dict(cls, d):
        """Make validated settings from :meth:`to_dict`'s output.

        Settings saved before ``n_fits`` existed were one fit.
        """
        return cls().replace(**{"n_fits": 1, **d})
