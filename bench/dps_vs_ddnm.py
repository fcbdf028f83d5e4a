"""Time per sampling step: DPS (autograd through the UNet) vs DDNM+ (projection only), one run.

Without --prior a tiny randomly initialised UNet is used: timing only, no quality meaning.

    python bench/dps_vs_ddnm.py --device cpu [--prior results/prior/faces]
"""

from __future__ import annotations

from ddnm_overhead import arguments, setup, timed


def main() -> None:
    import torch

    from thincam.solvers.ddnm import ddnm_plus
    from thincam.solvers.dps import dps

    args = arguments(__doc__.splitlines()[0], steps=20)
    unet, scheduler, physics, y, note = setup(args)
    print(
        f"device {args.device}, {note}, batch {args.batch}, {args.steps} steps, {args.size} px, "
        f"{args.boundary} operator, torch threads {torch.get_num_threads()}"
    )
    form = "svd" if args.boundary == "circular" else "scalar"
    runs = {
        f"DDNM+ {form} (eta 0.85)": lambda: ddnm_plus(
            physics,
            y,
            unet,
            scheduler,
            steps=args.steps,
            eta=0.85,
            sigma_y=0.01,
            form=form,
            generator=torch.Generator().manual_seed(0),
        ),
        "DPS constant zeta 3 (eta 1)": lambda: dps(
            physics, y, unet, scheduler, steps=args.steps, zeta=3.0, generator=torch.Generator().manual_seed(0)
        ),
    }
    per_step = {name: value / args.steps for name, value in timed(runs, args.device, args.repeats).items()}
    base = next(iter(per_step.values()))
    for name, seconds in per_step.items():
        print(
            f"{name:32s} {seconds * 1e3:8.1f} ms/step  {seconds * 1e3 / args.batch:7.2f} ms/step/image  {seconds / base:.2f}x"
        )


if __name__ == "__main__":
    main()
