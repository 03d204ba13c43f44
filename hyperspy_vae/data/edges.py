"""Analytic single-scattering edge shapes (no downloads, no GOS files).

Energies are in eV; every shape is in counts per channel at dose 1 before
the dose scale :data:`COUNTS_PER_DOSE`. The shapes follow published spectra
of iron oxides: Fe2+ (FeO, wustite) has its L3 white line at 708.5 eV and L2
at 721.5 eV; Fe3+ (Fe2O3, hematite) has its L3 maximum 1.4 eV higher, at
709.9 eV, with a shoulder 1.6 eV below it from the crystal-field split t2g
states, and a smaller L3/L2 ratio; the O K edge of a transition-metal oxide
has a pre-peak near 530.5 eV (O 2p hybridised with the metal 3d states)
below the main peak near 539.5 eV. Metallic iron (Fe0) has its L3 white line
lowest, near 706.8 eV; a fluoride (a common contaminant of ion-milled or
etched specimens) shows the F K edge from 685 eV with its first peak near
692 eV.
"""

import numpy as np

__all__ = [
    "COUNTS_PER_DOSE",
    "FE_L2",
    "FE_L3",
    "FE_METAL_L3",
    "F_K",
    "O_K",
    "background",
    "fe_l23_edge",
    "o_k_edge",
    "fe_metal_pre_peak",
    "f_k_edge",
    "fe_l23_expected_spectrum",
]

FE_L3 = 708.5
FE_L2 = 721.5
O_K = 532.0
FE_METAL_L3 = 706.8
F_K = 685.0
#: Scales the expected counts at dose 1: a 0.25 eV edge shift of a 64 x 64
#: Fe L2,3 map is then near the detection limit (Neyman-Pearson F1 about 0.9
#: at 2 % anomalous pixels), about 100 counts per channel near the edge.
COUNTS_PER_DOSE = 0.16


def white_line(energy, centre, width):
    """Pseudo-Voigt white line of unit height."""
    x = (energy - centre) / width
    return 0.6 / (1.0 + x**2) + 0.4 * np.exp(-0.5 * (x / 0.85) ** 2)


def continuum_step(energy, onset, width):
    """Smoothed ionisation-edge continuum with a slow post-edge decay."""
    step = 0.5 + np.arctan((energy - onset) / width) / np.pi
    return step * np.clip(onset / energy, 0, None) ** 2


def background(energy, slope=3.0):
    """Power-law pre-edge background, 400 counts at 700 eV."""
    return 400.0 * (np.asarray(energy, dtype=np.float64) / 700.0) ** (-slope)


def fe_l23_edge(energy, edge_shift=0.0, valence=2, *, l3_l2_ratio=1.0, broadening=1.0):
    """Fe L2,3 edge (white lines and continuum) of Fe2+ or Fe3+.

    Parameters
    ----------
    energy : numpy.ndarray
        Energy of each channel in eV.
    edge_shift : float or numpy.ndarray, default 0.0
        Chemical shift of the whole Fe L2,3 edge in eV.
    valence : {2, 3}, default 2
        2: FeO-like white lines at 708.5 and 721.5 eV; 3: Fe2O3-like, the L3
        maximum at 709.9 eV with a shoulder at 708.3 eV, L2 at 723.1 eV with
        its shoulder at 721.7 eV, and a smaller L3/L2 ratio.
    l3_l2_ratio : float, default 1.0
        Factor on the white lines' L3/L2 intensity ratio (below 1 lowers it,
        as a change of valence or spin state does); their summed area, which
        counts the empty 3d states, stays.
    broadening : float, default 1.0
        Factor on the white lines' widths, their areas kept (a disordered or
        mixed environment).

    Returns
    -------
    numpy.ndarray
    """
    if l3_l2_ratio <= 0 or broadening <= 0:
        raise ValueError(
            "l3_l2_ratio and broadening must be positive, not "
            f"{l3_l2_ratio} and {broadening}."
        )
    e = np.asarray(energy, dtype=np.float64)
    l3 = FE_L3 + edge_shift
    l2 = FE_L2 + edge_shift
    edge = 220.0 * (
        continuum_step(e, l3 - 0.5, 0.6) + 0.5 * continuum_step(e, l2 - 0.5, 0.6)
    )
    # (height, position, width) of the L3 lines, then of the L2 lines.
    if valence == 2:
        l3_lines = [(900.0, l3, 1.2)]
        l2_lines = [(300.0, l2, 1.4)]
    elif valence == 3:
        l3_lines = [(820.0, l3 + 1.4, 1.1), (330.0, l3 - 0.2, 0.8)]
        l2_lines = [(290.0, l2 + 1.6, 1.3), (110.0, l2 + 0.2, 0.9)]
    else:
        raise ValueError(f"valence must be 2 or 3, not {valence!r}.")
    # Scale the L3 lines by r c and the L2 lines by c, so that their ratio
    # changes by r and their summed area (height times width) stays.
    area_l3 = sum(h * w for h, _, w in l3_lines)
    area_l2 = sum(h * w for h, _, w in l2_lines)
    scale_l2 = (area_l3 + area_l2) / (l3_l2_ratio * area_l3 + area_l2)
    scale_l3 = l3_l2_ratio * scale_l2
    for lines, scale in ((l3_lines, scale_l3), (l2_lines, scale_l2)):
        for height, centre, width in lines:
            edge = edge + scale * height / broadening * white_line(
                e, centre, width * broadening
            )
    return edge


def fe_metal_pre_peak(energy, height):
    """The L3 white line of metallic iron (Fe0), a pre-peak of an oxide's edge.

    A second, reduced oxidation state in a pixel adds its L3 white line
    below the oxide's: metallic iron's lies near 706.8 eV, 1.7 eV below
    FeO's.

    Parameters
    ----------
    energy : numpy.ndarray
        Energy of each channel in eV.
    height : float
        Height as a fraction of the FeO L3 white line's.

    Returns
    -------
    numpy.ndarray
    """
    return 900.0 * height * white_line(np.asarray(energy, np.float64), FE_METAL_L3, 1.0)


def f_k_edge(energy, jump):
    """F K edge of a fluoride: a continuum from 685 eV and its first peak.

    Parameters
    ----------
    energy : numpy.ndarray
        Energy of each channel in eV.
    jump : float
        Height of the edge's continuum as a fraction of the Fe L3
        continuum's (220 counts at dose 1 before :data:`COUNTS_PER_DOSE`).

    Returns
    -------
    numpy.ndarray
    """
    e = np.asarray(energy, dtype=np.float64)
    return (
        220.0
        * jump
        * (
            continuum_step(e, F_K + 1.0, 1.0)
            + 1.5 * np.exp(-0.5 * ((e - 692.0) / 2.0) ** 2)
        )
    )


def o_k_edge(energy, edge_shift=0.0):
    """O K edge of a transition-metal oxide: pre-peak, main peak, continuum.

    Parameters
    ----------
    energy : numpy.ndarray
        Energy of each channel in eV.
    edge_shift : float or numpy.ndarray, default 0.0
        Shift of the whole edge in eV.

    Returns
    -------
    numpy.ndarray
    """
    e = np.asarray(energy, dtype=np.float64) - edge_shift
    return (
        320.0 * continuum_step(e, O_K + 1.0, 1.2)
        + 280.0 * np.exp(-0.5 * ((e - 530.5) / 0.7) ** 2)
        + 220.0 * np.exp(-0.5 * ((e - 539.5) / 2.2) ** 2)
        + 120.0 * np.exp(-0.5 * ((e - 546.0) / 3.5) ** 2)
    )


def fe_l23_expected_spectrum(
    energy, edge_shift=0.0, fe_content=1.0, thickness=1.0, slope=3.0, dose=1.0
):
    """Noise-free Fe L2,3 spectrum (expected counts per channel).

    Parameters
    ----------
    energy : numpy.ndarray
        Energy of each channel in eV, any leading shape broadcastable with the
        other parameters (which broadcast against ``energy[..., :1]``).
    edge_shift : float or numpy.ndarray, default 0.0
        Shift of the Fe L2,3 edge (white lines and continuum) in eV.
    fe_content : float or numpy.ndarray, default 1.0
        Relative Fe signal (0 removes the edge).
    thickness : float or numpy.ndarray, default 1.0
        Relative specimen thickness, scaling every count.
    slope : float or numpy.ndarray, default 3.0
        Power-law exponent of the background.
    dose : float, default 1.0
        Electron dose scale: multiplies every expected count.

    Returns
    -------
    numpy.ndarray
        Expected counts, the broadcast shape of the inputs.
    """
    e = np.asarray(energy, dtype=np.float64)
    edge = fe_l23_edge(e, edge_shift)
    return (
        COUNTS_PER_DOSE * dose * thickness * (background(e, slope) + fe_content * edge)
    )
