"""DMDiff: one-step latent diffusion restorer for metalens photographs (LoRA + SVDA, multipath).

Modules (import them directly; this package imports nothing, so it costs no torch/diffusers):
tokenizer (the offline CLIP tokenizer), architecture (the base components: building the tiny one,
loading it or SD-Turbo), pretrain (pretrain_dmdiff_base), svda (degradation maps, SVDA net),
lora (peft LoRA with Q modulation), model (DMDiff, load_dmdiff), train (train_dmdiff), pseudo
(make_pseudo_pairs), restore (restore, restore_sweep: the tunable decoder).
"""
