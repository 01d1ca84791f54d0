"""`pfbuild release`: fetch, source, build, check, publish, image, attest as keyed actions."""

from __future__ import annotations

import logging

from builder.check import (
    autopkgtest,
    blhc,
    elf,
    hardening,
    judge,
    lifecycle,
    report,
    targets,
    testbed,
    tools,
)
from builder.check import stage as check_stage
from builder.check.config import packaged
from builder.core.checkout import DOCKER_DIR
from builder.core.context import Context
from builder.core.digest import code_digest, hash_tree
from builder.fetch import archive, sources
from builder.image import build as image
from builder.image import container as image_container
from builder.image import proofs as imagetest
from builder.image import sbom as image_sbom
from builder.image import smtp as image_smtp
from builder.image import stage as image_stage
from builder.image import tlsclient as image_tlsclient
from builder.model.loader import load_recipe
from builder.model.recipe import Recipe
from builder.pipeline import attest, provenance
from builder.pipeline.actions import Action
from builder.pipeline.request import ReleaseRequest
from builder.pipeline.revisions import (
    build_code_digest,
    dist_digest,
    recipe_digest,
    source_code_digest,
    templates_digest,
    with_rebuild,
)
from builder.pipeline.runners import (
    attest_runner,
    build_runner,
    check_runner,
    fetch_runner,
    image_runner,
    image_test_runner,
    publish_runner,
    source_runner,
)
from builder.publish import (
    aptly,
    attestations,
    cosign,
    debfacts,
    dsse,
    history,
    live,
    sbom,
    signing,
    tree,
)
from builder.publish import inputs as publish_inputs
from builder.publish import repo as publish

log = logging.getLogger("pfbuild")


def release_builds(recipe: str, version: str) -> list[tuple[Recipe, str]]:
    """The recipes a release builds (the main one and its companions), with their versions."""
    main = load_recipe(recipe)
    recipes: list[tuple[Recipe, str]] = [(main, version)]
    recipes += [(load_recipe(name), version) for name, version in main.companions]
    return recipes


def release_actions(ctx: Context, request: ReleaseRequest) -> list[Action]:
    """The release graph, in execution order (a pure function of recipes and the request)."""
    recipes = release_builds(request.recipe, request.version)
    # What cannot be built is refused here, before a plan exists (dry runs included).
    for recipe, version in recipes:
        for note in recipe.release_notes(version):
            log.warning("%s", note)
    dists = {d.name: d for d in request.targets}
    actions: list[Action] = []
    checks: list[str] = []
    for recipe, version in recipes:
        rid = f"{recipe.name} {version}"
        digest = recipe_digest(recipe)
        actions.append(
            Action(
                f"fetch {rid}", "fetch",
                {"recipe": digest, "version": version, "code": code_digest(sources, archive)},
                run=fetch_runner(ctx, recipe, version),
            )
        )  # fmt: skip
        for name, dist in dists.items():
            if name not in recipe.binary_packages:
                continue
            # The rebuild counter the live repository asks for (builder.pipeline.revisions).
            built = with_rebuild(recipe, request.rebuilds.get((recipe.name, name), recipe.rebuild))
            inputs = {
                "recipe": recipe_digest(built),
                "templates": templates_digest(recipe),
                "target": dist_digest(dist),
                "code": source_code_digest(),
            }
            actions.append(
                Action(f"source {rid} {name}", "source", inputs, (f"fetch {rid}",),
                       run=source_runner(ctx, built, version, dist))
            )  # fmt: skip
            actions.append(
                Action(f"build {rid} {name}", "build",
                       {"code": build_code_digest()},
                       (f"source {rid} {name}",),
                       run=build_runner(ctx, built, version, dist, request.jobs,
                                        use_ccache=request.ccache),
                       long=True)
            )  # fmt: skip
            expected = sorted(recipe.expected_hardening[name][dist.arch])
            actions.append(
                Action(f"check {rid} {name}", "check",
                       {"expected": ",".join(expected),
                        "code": code_digest(check_stage, hardening, judge, targets, tools,
                                            report, elf, blhc, autopkgtest, testbed, packaged,
                                            lifecycle)},
                       (f"build {rid} {name}",), run=check_runner(ctx, recipe, version, dist),
                       long=True)
            )  # fmt: skip
            checks.append(f"check {rid} {name}")
    builds = [(r.name, v) for r, v in recipes]
    actions.append(
        Action("publish", "publish",
               {"targets": ",".join(dists), "url": request.repo_url, "base": request.base or "",
                "code": code_digest(publish, aptly, publish_inputs, tree, signing, history, live)},
               tuple(checks), run=publish_runner(ctx, request, builds))
    )  # fmt: skip
    if request.images:
        actions.extend(image_actions(ctx, request))
    actions.append(attest_action(ctx, request, recipes, actions))
    return actions


def attest_action(
    ctx: Context, request: ReleaseRequest, recipes: list[tuple[Recipe, str]], before: list[Action]
) -> Action:
    """SBOMs and signed provenance of everything the actions before it made, published."""
    # It reads the outputs of every earlier action, and comes after the image proofs: only
    # images that passed them are attested.
    return Action(
        "attest", "attest",
        {"code": code_digest(attest, provenance, attestations, debfacts, dsse, sbom, image_sbom,
                             cosign),
         "cosign_key": str(request.cosign_key or "")},
        tuple(a.name for a in before),
        run=attest_runner(ctx, request, recipes),
    )  # fmt: skip


def image_actions(ctx: Context, request: ReleaseRequest) -> list[Action]:
    """Build and prove one image per variant from the published repository."""
    docker_dir = hash_tree(DOCKER_DIR)
    by_variant = {d.variant: d for d in request.targets}
    actions: list[Action] = []
    for variant in request.variants:
        build_action = f"build {request.recipe} {request.version} {by_variant[variant].name}"
        actions.append(
            Action(f"image {variant}", "image",
                   {"docker": docker_dir, "gate": image.gate_digest(),
                    "code": code_digest(image, image_stage)},
                   ("publish", build_action),
                   run=image_runner(ctx, request.version, variant, build_action), long=True)
        )  # fmt: skip
        actions.append(
            Action(f"image-test {variant}", "image",
                   {"code": code_digest(imagetest, image_container, image_smtp,
                                        image_tlsclient, image_stage)},
                   (f"image {variant}",),
                   run=image_test_runner(ctx, variant), long=True)
        )  # fmt: skip
    return actions
