"""The table of theory checks by name, in the order the demo runs them."""

from __future__ import annotations

from measureflow.checks import (
    annealed_rastrigin,
    averaged_sgd,
    bayes_classifier,
    benamou_brenier,
    cgnn_identifies,
    change_of_variables,
    de_bruijn,
    diffusion_digits,
    discriminator_ratio,
    distance_geometry,
    ebm_mixture,
    fgan_bound,
    flows_to_mixture,
    gan_stability,
    implicit_bias,
    infinite_langevin_ergodicity,
    infinite_langevin_posterior,
    infinite_langevin_stability,
    kantorovich_duality,
    landscape,
    langevin_excess_risk,
    langevin_stationary,
    lazy_vs_active,
    learned_score_toys,
    lfvi_consistency,
    lotka_volterra_posteriors,
    lsi_decay,
    mean_field_langevin,
    mmd_fit_asymmetry,
    mmd_unbiased,
    mode_coverage,
    noise_smooths,
    ntk_concentration,
    ntk_linear_convergence,
    optimal_discriminator,
    ou_forgets,
    particles_vs_pde,
    reverse_exact_score,
    sgld_logistic,
    simplex_methods,
    spectral_bias,
    tuebingen,
    ula_bias,
    vanishing_gradients,
    w2_sample_rate,
    wgf_descent,
)
from measureflow.checks.base import CheckSpec

__all__ = ["CHECKS"]

CHECKS: dict[str, CheckSpec] = {
    "langevin-stationary": CheckSpec(
        "langevin-stationary",
        "GLD's stationary law is the Gibbs measure (double well, MALA and small-step ULA)",
        langevin_stationary.run,
    ),
    "ula-bias": CheckSpec(
        "ula-bias",
        "ULA's stationary variance on a Gaussian: closed form vs measurement; MALA unbiased",
        ula_bias.run,
    ),
    "annealed-rastrigin": CheckSpec(
        "annealed-rastrigin",
        "annealed Langevin beats gradient descent at finding Rastrigin's global basin (d = 10)",
        annealed_rastrigin.run,
    ),
    "sgld-logistic": CheckSpec(
        "sgld-logistic",
        "SGLD, SGLD-CV and pSGLD posteriors for logistic regression match a MALA reference",
        sgld_logistic.run,
    ),
    "mmd-unbiased": CheckSpec(
        "mmd-unbiased",
        "the U-statistic MMD^2 is unbiased against the Gaussian closed form; the V-statistic is not",
        mmd_unbiased.run,
    ),
    "kantorovich-duality": CheckSpec(
        "kantorovich-duality",
        "Kantorovich-Rubinstein duality: the LP dual equals the primal W1; a gradient-penalty "
        "critic certifies W1 from below",
        kantorovich_duality.run,
    ),
    "w2-sample-rate": CheckSpec(
        "w2-sample-rate",
        "sample W2 -> Gaussian closed form: n^(-1/2) with the CLT constant for d = 1, 2; "
        "bias n^(-2/5) at d = 5",
        w2_sample_rate.run,
    ),
    "distance-geometry": CheckSpec(
        "distance-geometry",
        "W1, W2, MMD grow continuously with a shift; KL blows up and JS saturates at log 2",
        distance_geometry.run,
    ),
    "de-bruijn": CheckSpec(
        "de-bruijn",
        "de Bruijn's identity along GLD: dKL/dt = -(1/beta) I on the double-well grid solution",
        de_bruijn.run,
    ),
    "lsi-decay": CheckSpec(
        "lsi-decay",
        "KL decays like exp(-2 m t) under a log-Sobolev inequality (exact for a Gaussian); the "
        "double well's rate against the Holley-Stroock bound",
        lsi_decay.run,
    ),
    "particles-vs-pde": CheckSpec(
        "particles-vs-pde",
        "10^5 ULA particles follow the Fokker-Planck grid solution at t = 0.1, 0.5, 2; the gap is O(h)",
        particles_vs_pde.run,
    ),
    "wgf-descent": CheckSpec(
        "wgf-descent",
        "an aggregation-diffusion Wasserstein gradient flow decreases F on particles and on the "
        "grid, and the two agree as n grows",
        wgf_descent.run,
    ),
    "benamou-brenier": CheckSpec(
        "benamou-brenier",
        "Benamou-Brenier: the displacement interpolation between Gaussians has action W2^2 and "
        "constant speed; 1-D grid W2 matches particles",
        benamou_brenier.run,
    ),
    "simplex-methods": CheckSpec(
        "simplex-methods",
        "conditional gradient, projected gradient and mirror descent reach the same minimizer; "
        "Frank-Wolfe's rates; sparsemax three ways",
        simplex_methods.run,
    ),
    "flows-to-mixture": CheckSpec(
        "flows-to-mixture",
        "SVGD, ULA and the MMD flow carry one cloud to a 2-D Gaussian mixture; discrepancy vs time",
        flows_to_mixture.run,
    ),
    "ou-forgets": CheckSpec(
        "ou-forgets",
        "the forward OU process forgets the data: KL(p_t || N(0, I)) decays at the log-Sobolev rate 2 "
        "(attained off centre; 4 for centred data)",
        ou_forgets.run,
    ),
    "reverse-exact-score": CheckSpec(
        "reverse-exact-score",
        "with the exact score, the reverse SDE, probability-flow ODE and PC sampler reach the noise "
        "floor on a 2-D mixture as steps grow",
        reverse_exact_score.run,
    ),
    "learned-score-toys": CheckSpec(
        "learned-score-toys",
        "a score learned by denoising score matching generates moons, 8 Gaussians and a "
        "checkerboard; NLL vs the true density",
        learned_score_toys.run,
    ),
    "diffusion-digits": CheckSpec(
        "diffusion-digits",
        "a diffusion model trained on 8x8 digits generates digits a classifier recognizes, in "
        "balanced classes; Frechet distance vs held-out",
        diffusion_digits.run,
    ),
    "change-of-variables": CheckSpec(
        "change-of-variables",
        "a normalizing flow's exact NLL exceeds the true NLL by KL(p || q) >= 0, small after training, "
        "and its density integrates to 1; flow vs diffusion NLL at equal training time",
        change_of_variables.run,
    ),
    "ebm-mixture": CheckSpec(
        "ebm-mixture",
        "an energy-based model trained by maximum likelihood with persistent Langevin chains learns a "
        "2-D mixture: MALA samples within 3x the MMD^2 floor, every mode in the landscape",
        ebm_mixture.run,
    ),
    "optimal-discriminator": CheckSpec(
        "optimal-discriminator",
        "with the generator frozen, the trained discriminator approaches D* = p_D / (p_D + p_theta) "
        "and its value 2 JS - log 4 (quadrature)",
        optimal_discriminator.run,
    ),
    "discriminator-ratio": CheckSpec(
        "discriminator-ratio",
        "a trained discriminator's logit estimates log p/q; with a well-specified quadratic critic the L2 "
        "error falls like sqrt(C/n), C the sandwich constant (two Gaussians; a joint vs its marginals)",
        discriminator_ratio.run,
    ),
    "fgan-bound": CheckSpec(
        "fgan-bound",
        "trained f-GAN critics' variational bounds (KL, reverse KL, JS, Pearson, Hellinger) approach "
        "D_f from below (quadrature)",
        fgan_bound.run,
    ),
    "vanishing-gradients": CheckSpec(
        "vanishing-gradients",
        "with disjoint supports the original GAN's generator gradient vanishes as the discriminator "
        "trains; WGAN-GP's and GMMN's do not",
        vanishing_gradients.run,
    ),
    "mode-coverage": CheckSpec(
        "mode-coverage",
        "GANs on the 8-Gaussian ring: WGAN-GP, GMMN and MMD-GAN cover all modes; exact draws match "
        "the binomial law; every loss on the ring and the 25-grid reported",
        mode_coverage.run,
    ),
    "gan-stability": CheckSpec(
        "gan-stability",
        "the RKHS-regularized GAN (Chu, Minami & Fukumizu) is stable for generator steps up to "
        "gamma_0 = 1/(7 alpha + beta_2) and degrades far above it",
        gan_stability.run,
    ),
    "ntk-concentration": CheckSpec(
        "ntk-concentration",
        "the empirical NTK concentrates on the infinite-width kernel like M^(-1/2); the Hoeffding "
        "bound holds",
        ntk_concentration.run,
    ),
    "ntk-linear-convergence": CheckSpec(
        "ntk-linear-convergence",
        "wide NTK-scaled GD decays the training loss at least like exp(-eta lambda_min t); the net's "
        "predictions approach kernel regression like M^(-1/2)",
        ntk_linear_convergence.run,
    ),
    "lazy-vs-active": CheckSpec(
        "lazy-vs-active",
        "relative weight movement at a fixed loss: M^(-1/2) under NTK scaling, order one under "
        "mean-field scaling",
        lazy_vs_active.run,
    ),
    "spectral-bias": CheckSpec(
        "spectral-bias",
        "on the circle each Fourier frequency is learned at rate eta mu_k, in the order of the NTK's "
        "eigenvalues",
        spectral_bias.run,
    ),
    "implicit-bias": CheckSpec(
        "implicit-bias",
        "mean-field logistic/exp training tends to the F1 max-margin (LP over directions) with sparse "
        "neurons; the NTK network's margin differs",
        implicit_bias.run,
    ),
    "landscape": CheckSpec(
        "landscape",
        "GD reaches zero training loss from every initialization when M >= n; at M = n/4 a "
        "measurable fraction stalls",
        landscape.run,
    ),
    "averaged-sgd": CheckSpec(
        "averaged-sgd",
        "averaged regularized SGD's excess risk falls like T^(-2rb/(2rb+1)) for targets f* = T^r h",
        averaged_sgd.run,
    ),
    "infinite-langevin-stability": CheckSpec(
        "infinite-langevin-stability",
        "explicit Euler in a Hilbert space needs eta < 2 mu_K / lam; the semi-implicit scheme is stable "
        "at 100x that step for every K",
        infinite_langevin_stability.run,
    ),
    "infinite-langevin-posterior": CheckSpec(
        "infinite-langevin-posterior",
        "semi-implicit Langevin with K = 1,000 modes follows its closed-form Gaussian law (the GP "
        "posterior as eta -> 0); weak-error order >= 1/2 - kappa",
        infinite_langevin_posterior.run,
    ),
    "infinite-langevin-ergodicity": CheckSpec(
        "infinite-langevin-ergodicity",
        "under strict dissipativity E L(X_n) converges geometrically at a rate >= Lambda*_eta",
        infinite_langevin_ergodicity.run,
    ),
    "langevin-excess-risk": CheckSpec(
        "langevin-excess-risk",
        "GLD's stationary excess loss on a non-convex loss is its Gibbs measure's, falling at least like "
        "d log(beta)/beta; gradient descent stays at spurious minima",
        langevin_excess_risk.run,
    ),
    "mean-field-langevin": CheckSpec(
        "mean-field-langevin",
        "mean-field Langevin: two starts reach the same free energy, which decreases along the flow; "
        "the stationary risk decreases in M",
        mean_field_langevin.run,
    ),
    "noise-smooths": CheckSpec(
        "noise-smooths",
        "noise smooths the loss: SGD-like noise moves to the flat minimum as eta grows; graduated "
        "descent on Rastrigin reaches the global basin where the smoothed loss predicts",
        noise_smooths.run,
    ),
    "bayes-classifier": CheckSpec(
        "bayes-classifier",
        "strong low noise: Langevin on an infinite-width network finds the Bayes classifier, failing "
        "less often as beta and n grow (Suzuki 2020)",
        bayes_classifier.run,
    ),
    "lfvi-consistency": CheckSpec(
        "lfvi-consistency",
        "likelihood-free VI (generator vs a log-ratio discriminator) recovers a closed-form Gaussian "
        "posterior; C2ST falls toward 1/2 as the simulation budget grows",
        lfvi_consistency.run,
    ),
    "lotka-volterra-posteriors": CheckSpec(
        "lotka-volterra-posteriors",
        "Lotka-Volterra: generative-model posteriors (NPE, diffusion, LFVI, MMD) approach the MALA "
        "reference as the budget grows and beat rejection ABC at equal budget",
        lotka_volterra_posteriors.run,
    ),
    "cgnn-identifies": CheckSpec(
        "cgnn-identifies",
        "CGNN identifies the direction of additive-noise pairs (> 80% of 50) and is at chance on "
        "linear-Gaussian pairs, which are not identifiable",
        cgnn_identifies.run,
    ),
    "mmd-fit-asymmetry": CheckSpec(
        "mmd-fit-asymmetry",
        "CGNN's causal fit reaches the computed i.i.d. noise floor of the MMD; its anticausal fit stays "
        "above it",
        mmd_fit_asymmetry.run,
    ),
    "tuebingen": CheckSpec(
        "tuebingen",
        "Tuebingen cause-effect pairs: CGNN better than chance (weighted accuracy), beside ANM, IGCI, RECI "
        "and Meta-CGNN, with decision-rate curves",
        tuebingen.run,
    ),
}
