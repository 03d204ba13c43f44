"""
VAE against PCA on a synthetic spectrum image
=============================================

A 48 x 48 Fe L2,3 map in which 2 % of the pixels have their edge shifted by
0.5 eV: the VAE's map beside PCA's, on one colour scale, with the truth.
"""

import hyperspy.api as hs

import hyperspy_vae

hs.preferences.General.show_progressbar = False
s, truth = hyperspy_vae.data.fe_l23_spectrum_image(
    (48, 48), shift=0.5, fraction=0.02, random_state=0
)
amap = s.vae_anomalies(random_state=0, max_steps=100)
fig = hyperspy_vae.plot.compare(s, truth.anomalous, pca_components=(3, 5))
