"""VAEResults: what a ``vae_anomalies`` run leaves behind; save and load."""

import json
import math
import zipfile
from pathlib import Path

import numpy as np

from ._version import __version__
from .noise import NoiseModel
from .settings import VAESettings

__all__ = ["VAEResults"]

_FORMAT = "hyperspy_vae.VAEResults"
#: Largest results file accepted, unpacked (a guard against zip bombs).
_MAX_UNPACKED_BYTES = 8 * 2**30
#: Largest decoder accepted from a file (parameters of its last layer).
_MAX_PARAMETERS = 100_000_000
_FORMAT_VERSION = 4
#: The oldest format this version reads (3: one fit, before ``n_fits``).
_OLDEST_FORMAT_VERSION = 3


class VAEResults:
    """Results of :meth:`vae_anomalies`, stored on the signal as ``s.vae_results``.

    Like HyperSpy's ``learning_results`` (which ``vae_anomalies`` leaves
    untouched), it holds what the run computed, and can be saved to a single
    ``.npz`` file (no pickle: weights and arrays as plain arrays, settings as
    JSON) and loaded to score another spectrum image without retraining.

    Attributes
    ----------
    settings : VAESettings
        Training settings.
    random_state : int
        Seed that made the run reproducible.
    models : list of hyperspy_vae.nn.model.CVAE3D
        The trained networks, two per fit (cross-fitting: each scores the
        pixels the other learned from); ``2 * settings.n_fits`` in all.
    energy : numpy.ndarray
        Energies of the source's channels the model uses (before binning).
    energy_units : str
        Units of ``energy``.
    channel_mask : numpy.ndarray of bool
        Over the source's signal axis: True for channels the model uses.
    navigation_mask : numpy.ndarray of bool or None
        True for pixels excluded from training (as passed by the user).
    scores : dict of numpy.ndarray
        Navigation-shaped scores: ``combined`` (the anomaly map), ``shift``,
        ``edge_shift`` and ``local`` (combined), ``latent``, ``deviance`` and
        ``pearson`` (kept).
    p_values : dict of numpy.ndarray
        Navigation-shaped null p-values of the combined scores.
    latent_mean, latent_log_var : numpy.ndarray
        Navigation shape + ``(latent_dim,)``: each pixel's posterior (under
        the first fit's networks, ``models[0]`` and ``models[1]``).
    history : dict
        Training history: steps and losses.
    threshold : dict
        ``value``, ``method`` and ``fdr`` of the map's threshold.
    energy_bin : int
        Adjacent channels summed into one channel of the model (see
        ``max_work`` in :class:`~hyperspy_vae.settings.VAESettings`).
    noise : hyperspy_vae.noise.NoiseModel
        The detector's noise, estimated from the data.
    offset : numpy.ndarray
        Navigation-shaped energy offset of each pixel against its
        reconstruction by the first fit's networks, in model channels.
    drift : numpy.ndarray
        Navigation-shaped energy drift over the scan, in the energy units
        (from the zero-loss peak with ``low_loss``, else a robust line
        through the pixels' offsets in each scan row).
    spikes : numpy.ndarray of bool
        Navigation-shaped: pixels with a cosmic-ray spike (left out of their
        scores), as most fits found them.
    dispersion : float
        Energy per model channel.
    flag_frequency : numpy.ndarray
        Navigation-shaped fraction of the fits (``settings.n_fits``) whose
        own scores flag each pixel at the map's initial threshold rule: 1 or
        0 everywhere with a single fit.
    warnings : list of str
        Why the noise model may not hold for these data (empty if none).
    """

    def __init__(
        self,
        settings,
        random_state,
        models,
        energy,
        energy_units,
        channel_mask,
        navigation_mask,
        scores,
        p_values,
        latent_mean,
        latent_log_var,
        history,
        threshold,
        device="cpu",
        version=__version__,
        energy_bin=1,
        noise=None,
        offset=None,
        drift=None,
        spikes=None,
        dispersion=1.0,
        warnings=(),
        flag_frequency=None,
    ):
        self.settings = settings
        self.random_state = random_state
        self.models = list(models)
        self.energy = np.asarray(energy)
        self.energy_units = energy_units
        self.channel_mask = np.asarray(channel_mask, dtype=bool)
        self.navigation_mask = navigation_mask
        self.scores = scores
        self.p_values = p_values
        self.latent_mean = latent_mean
        self.latent_log_var = latent_log_var
        self.history = history
        self.threshold = threshold
        self.device = device
        self.version = version
        self.energy_bin = int(energy_bin)
        self.noise = NoiseModel() if noise is None else noise
        shape = np.shape(self.scores["combined"])
        self.offset = np.zeros(shape) if offset is None else np.asarray(offset)
        self.drift = np.zeros(shape) if drift is None else np.asarray(drift)
        self.spikes = (
            np.zeros(shape, dtype=bool) if spikes is None else np.asarray(spikes, bool)
        )
        self.dispersion = float(dispersion)
        self.flag_frequency = (
            (np.asarray(self.scores["combined"]) > self.threshold["value"]).astype(
                np.float64
            )
            if flag_frequency is None
            else np.asarray(flag_frequency, dtype=np.float64)
        )
        self.warnings = list(warnings)
        self.anomaly_map = None

    @property
    def model(self):
        """The first network (all have the same architecture)."""
        return self.models[0]

    def _sync_threshold(self):
        """Take the threshold from the anomaly map, where the user may set it."""
        amap = self.anomaly_map
        if amap is not None and amap.threshold is not None:
            self.threshold = {
                "value": amap.threshold,
                "method": amap.metadata.get_item("Anomaly.threshold_method"),
                "fdr": amap.metadata.get_item("Anomaly.fdr"),
            }
        return self.threshold

    @property
    def n_pixels(self):
        """Number of scored pixels."""
        return int(self.scores["combined"].size)

    def summary(self):
        """Return a short text summary of the run (also printed by ``print_info``).

        Returns
        -------
        str
        """
        s = self.settings
        self._sync_threshold()
        hist = self.history or {}
        fits = hist.get("fits") or [{}]
        steps = fits[0].get("step", [])
        val = fits[0].get("validation_loss", [])
        n_anomalous = int(np.sum(self.scores["combined"] > self.threshold["value"]))
        lines = [
            f"VAE anomaly detection (hyperspy_vae {self.version})",
            "=" * 40,
            f"Latent dimension: {s.latent_dim}; patch {s.patch_size}x{s.patch_size} "
            f"pixels x {self.energy.size} channels "
            f"({self.energy[0]:.2f} to {self.energy[-1]:.2f} {self.energy_units})"
            + (f", binned by {self.energy_bin}" if self.energy_bin > 1 else ""),
            (
                f"Training: {hist['n_train']} pixels, two cross-fitted models"
                + (f" x {s.n_fits} fits" if s.n_fits > 1 else "")
                + (f", {steps[-1]} steps" if steps else "")
                + (
                    f", held-out deviance per channel "
                    f"{np.nanmin(val) / self.model.n_channels:.3f}"
                    if val
                    else ""
                )
                if "n_train" in hist
                else "Scored with a saved model"
            ),
            f"Noise: variance {self.noise.phi:.3g} x mean + "
            f"{self.noise.read_variance:.3g}; channel correlation "
            f"{self.noise.correlation[1] if self.noise.correlation.size > 1 else 0:.2f}",
            f"Drift over the scan: {np.ptp(self.drift):.3g} {self.energy_units}; "
            f"cosmic-ray spikes in {int(self.spikes.sum())} pixels",
            f"Device: {self.device}; random_state: {self.random_state}",
            f"Threshold: {self.threshold['value']:.3f} "
            f"({self.threshold['method']}"
            + (
                f", fdr={self.threshold['fdr']}"
                if self.threshold.get("method") in ("fdr", "f1")
                else ""
            )
            + f"): {n_anomalous} anomalous of {self.n_pixels} pixels",
        ]
        if any(f.get("interrupted") for f in fits):
            lines.append("Training was interrupted: the best model so far was used.")
        lines += [f"Warning: {message}" for message in self.warnings]
        return "\n".join(lines)

    def __repr__(self):
        return f"<VAEResults: {self.n_pixels} pixels, latent_dim={self.settings.latent_dim}>"

    # ----------------------------------------------------------------- saving
    def _metadata(self):
        self._sync_threshold()
        return {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "version": self.version,
            "settings": self.settings.to_dict(),
            "random_state": int(self.random_state),
            "energy_units": self.energy_units,
            "energy_bin": self.energy_bin,
            "threshold": self.threshold,
            "device": str(self.device),
            "history": _jsonable(self.history),
            "score_names": sorted(self.scores),
            "p_value_names": sorted(self.p_values),
            "n_models": len(self.models),
            "noise": self.noise.to_dict(),
            "dispersion": self.dispersion,
            "warnings": self.warnings,
        }

    def save(self, filename, overwrite=False):
        """Save to a single ``.npz`` file (no pickle anywhere).

        Parameters
        ----------
        filename : str or pathlib.Path
            Destination; ``.npz`` is appended if missing.
        overwrite : bool, default False
            Replace an existing file.

        Returns
        -------
        pathlib.Path
            The file written.
        """
        path = Path(filename)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
        arrays = {
            "metadata_json": np.array(json.dumps(self._metadata())),
            "energy": self.energy,
            "channel_mask": self.channel_mask,
            "latent_mean": self.latent_mean,
            "latent_log_var": self.latent_log_var,
            "offset": self.offset,
            "drift": self.drift,
            "spikes": self.spikes,
            "flag_frequency": self.flag_frequency,
        }
        if self.navigation_mask is not None:
            arrays["navigation_mask"] = np.asarray(self.navigation_mask, dtype=bool)
        for name, values in self.scores.items():
            arrays[f"scores/{name}"] = values
        for name, values in self.p_values.items():
            arrays[f"p_values/{name}"] = values
        for i, model in enumerate(self.models):
            for name, tensor in model.state_dict().items():
                arrays[f"weights/{i}/{name}"] = tensor.detach().cpu().numpy()
        np.savez_compressed(path, **arrays)
        return path

    @classmethod
    def load(cls, filename):
        """Load results saved by :meth:`save`.

        The file is read with ``allow_pickle=False``: loading never executes
        code. A file of another format or an incompatible version, or weights
        that do not fit the stored settings, raise a clear error.

        Parameters
        ----------
        filename : str or pathlib.Path

        Returns
        -------
        VAEResults
        """
        from .cube import input_binning
        from .nn.model import CVAE3D

        path = Path(filename)
        if path.suffix != ".npz" and not path.exists():
            path = path.with_name(path.name + ".npz")
        too_big = False
        try:
            with np.load(path, allow_pickle=False) as f:
                unpacked = sum(info.file_size for info in f.zip.infolist())
                too_big = unpacked > _MAX_UNPACKED_BYTES
                arrays = {} if too_big else {key: f[key] for key in f.files}
        except (ValueError, AttributeError, TypeError, zipfile.BadZipFile) as err:
            raise ValueError(
                f"{path} is not a hyperspy_vae results file (or it holds pickled "
                "objects, which are refused)."
            ) from err
        if too_big:
            raise ValueError(
                f"{path} would unpack to {unpacked / 2**30:.1f} GiB, more than a "
                "results file holds; it is refused."
            )
        if "metadata_json" not in arrays:
            raise ValueError(f"{path} is not a hyperspy_vae results file.")
        meta = json.loads(str(arrays["metadata_json"]))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a hyperspy_vae results file.")
        if meta.get("format_version", 0) < _OLDEST_FORMAT_VERSION:
            raise ValueError(
                f"{path} holds a network of an older hyperspy_vae "
                f"({meta.get('version')}, format {meta.get('format_version')}) "
                "that this version cannot run; train the model again."
            )
        if meta.get("format_version", 0) > _FORMAT_VERSION:
            raise ValueError(
                f"{path} was written by a newer hyperspy_vae (format "
                f"{meta['format_version']}); upgrade hyperspy_vae to read it."
            )
        try:
            settings = VAESettings.from_dict(meta["settings"])
            energy = arrays["energy"]
            score_names, p_value_names = meta["score_names"], meta["p_value_names"]
            missing = [
                key
                for key in ["channel_mask", "latent_mean", "latent_log_var"]
                + [f"scores/{n}" for n in score_names]
                + [f"p_values/{n}" for n in p_value_names]
                if key not in arrays
            ]
        except (KeyError, TypeError) as err:
            raise ValueError(f"{path} is incomplete: {err!r} is missing.") from err
        if missing:
            raise ValueError(f"{path} is incomplete: {missing} missing.")
        if (
            energy.ndim != 1
            or not 8 <= energy.size <= 100_000
            or not np.issubdtype(energy.dtype, np.number)
            or not np.isfinite(energy).all()
        ):
            raise ValueError(f"{path} has an invalid energy axis.")
        if (
            max(settings.hidden_channels) > 4096
            or settings.latent_dim > 256
            or settings.patch_size > 15
        ):
            raise ValueError(f"{path} asks for an implausibly large network.")
        energy_bin = meta.get("energy_bin", 1)
        if not isinstance(energy_bin, int) or not 1 <= energy_bin <= energy.size:
            raise ValueError(f"{path} has an invalid energy binning {energy_bin!r}.")
        n_channels = math.ceil(energy.size / energy_bin)
        # The decoder's last layer dominates: 8 * hidden[2] * n_channels.
        if 8 * settings.hidden_channels[2] * n_channels > _MAX_PARAMETERS:
            raise ValueError(f"{path} asks for an implausibly large network.")
        n_models = meta.get("n_models")
        if n_models != 2 * settings.n_fits:
            raise ValueError(
                f"{path} has {n_models!r} networks; two cross-fitted ones per "
                f"fit ({settings.n_fits}) are needed."
            )
        models = []
        for i in range(n_models):
            model = CVAE3D(
                n_channels,
                settings.latent_dim,
                settings.patch_size,
                settings.hidden_channels,
                math.ceil(
                    n_channels
                    / input_binning(n_channels, settings.max_encoder_channels)
                ),
            )
            prefix = f"weights/{i}/"
            state = {
                key[len(prefix) :]: _tensor(value)
                for key, value in arrays.items()
                if key.startswith(prefix)
            }
            if not all(
                np.issubdtype(v.numpy().dtype, np.floating) and bool(v.isfinite().all())
                for v in state.values()
            ):
                raise ValueError(f"The weights in {path} are not all finite numbers.")
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as err:
                raise ValueError(
                    f"The weights in {path} do not match its settings: {err}"
                ) from err
            if not 0 <= float(model.output_blur) <= 100 or not bool(
                (model.input_std > 0).all()
            ):
                raise ValueError(f"{path} holds an invalid network.")
            model.eval()
            models.append(model)
        try:
            noise = NoiseModel.from_dict(meta["noise"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} has an invalid noise model: {err!r}.") from err
        c = noise.correlation
        if not (
            np.isfinite(noise.phi)
            and noise.phi > 0
            and np.isfinite(noise.read_variance)
            and noise.read_variance >= 0
            and c.ndim == 1
            and 1 <= c.size <= 64
            and np.isfinite(c).all()
            and c[0] == 1
        ):
            raise ValueError(f"{path} has an invalid noise model.")
        shape = arrays["scores/combined"].shape if "scores/combined" in arrays else None
        for key in ("offset", "drift", "spikes", "flag_frequency"):
            if key in arrays and arrays[key].shape != shape:
                raise ValueError(f"{path} has a {key} map of the wrong shape.")
        frequency = arrays.get("flag_frequency")
        if frequency is not None and not (
            np.issubdtype(frequency.dtype, np.floating)
            and ((frequency >= 0) & (frequency <= 1)).all()
        ):
            raise ValueError(f"{path} has an invalid flag frequency map.")
        if arrays["latent_mean"].shape[:-1] != shape:
            raise ValueError(f"{path} has latent maps of the wrong shape.")
        mask = arrays.get("navigation_mask")
        if mask is not None and (mask.dtype != bool or mask.shape != shape):
            raise ValueError(f"{path} has an invalid navigation mask.")
        return cls(
            settings=settings,
            random_state=meta["random_state"],
            models=models,
            energy=energy,
            energy_units=meta["energy_units"],
            channel_mask=arrays["channel_mask"],
            navigation_mask=arrays.get("navigation_mask"),
            scores={n: arrays[f"scores/{n}"] for n in score_names},
            p_values={n: arrays[f"p_values/{n}"] for n in p_value_names},
            latent_mean=arrays["latent_mean"],
            latent_log_var=arrays["latent_log_var"],
            history=meta["history"],
            threshold=meta["threshold"],
            device=meta["device"],
            version=meta["version"],
            energy_bin=energy_bin,
            noise=noise,
            offset=arrays.get("offset"),
            drift=arrays.get("drift"),
            spikes=arrays.get("spikes"),
            flag_frequency=arrays.get("flag_frequency"),
            dispersion=float(meta.get("dispersion", 1.0)),
            warnings=[str(w) for w in meta.get("warnings", [])],
        )


def _tensor(array):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array))


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
