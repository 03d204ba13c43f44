"""
Inspecting a run
================

The summary figure (map, score histogram with its threshold, latent maps,
typical against anomalous spectra) and the training loss.
"""

import hyperspy.api as hs

import hyperspy_vae

hs.preferences.General.show_progressbar = False
s, truth = hyperspy_vae.data.fe_l23_spectrum_image(
    (32, 32), shift=1.0, fraction=0.03, random_state=1
)
amap = s.vae_anomalies(random_state=1, max_steps=100, print_info=False)
print(s.vae_results.summary())
fig = s.plot_vae_results()
ax = s.plot_vae_loss()
