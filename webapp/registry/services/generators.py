"""Writes of generators: the registry's classes, the built-in "real" among them."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import transaction

from webapp.audit.services import audit_record
from webapp.registry.models import Generator
from webapp.registry.services.errors import Actor, RegistryError

REAL_DEFAULTS = {
    "name": "Real photograph",
    "family": Generator.Family.REAL,
    "description": "Photographs taken with a camera. Built in: it cannot be renamed or deleted.",
    "builtin": True,
    "is_active": True,
}
MAX_ALIASES = 50
MAX_ALIAS_LENGTH = 200


def generator_aliases_clean(aliases: Sequence[str]) -> list[str]:
    """The names a generator goes by, trimmed, blanks and repeats (ignoring case) left out, in the order given."""
    if isinstance(aliases, str) or not isinstance(aliases, Sequence):
        raise ValidationError({"aliases": "Aliases are a list of names."})
    cleaned: dict[str, str] = {}
    for alias in aliases:
        alias = " ".join(str(alias).split())
        if len(alias) > MAX_ALIAS_LENGTH:
            raise ValidationError({"aliases": f"An alias is at most {MAX_ALIAS_LENGTH} characters: {alias[:40]}..."})
        if alias:
            cleaned.setdefault(alias.casefold(), alias)
    if len(cleaned) > MAX_ALIASES:
        raise ValidationError({"aliases": f"At most {MAX_ALIASES} aliases per generator."})
    return list(cleaned.values())


def generator_ensure_real() -> Generator:
    """The built-in "real" class (a data migration makes it; this restores it after a database flush)."""
    generator, _ = Generator.objects.get_or_create(slug=Generator.REAL_SLUG, defaults=REAL_DEFAULTS)
    return generator


def generator_create(
    *,
    actor: Actor,
    name: str,
    slug: str,
    family: str,
    description: str = "",
    release: str = "",
    is_active: bool = True,
    aliases: Sequence[str] | None = (),
) -> Generator:
    generator = Generator(
        name=name,
        slug=slug,
        family=family,
        description=description,
        release=release,
        is_active=is_active,
        aliases=generator_aliases_clean(aliases or []),
    )
    generator.full_clean()
    generator.save()
    audit_record(actor=actor, action="generator_create", target=generator, detail={"slug": slug})
    return generator


def generator_update(
    *,
    actor: Actor,
    generator: Generator,
    name: str | None = None,
    slug: str | None = None,
    family: str | None = None,
    description: str | None = None,
    release: str | None = None,
    is_active: bool | None = None,
    aliases: Sequence[str] | None = None,
) -> Generator:
    """Change the given fields; the built-in "real" keeps its name, slug, family and active flag."""
    changes = {
        key: value
        for key, value in {
            "name": name,
            "slug": slug,
            "family": family,
            "description": description,
            "release": release,
            "is_active": is_active,
            "aliases": None if aliases is None else generator_aliases_clean(aliases),
        }.items()
        if value is not None and getattr(generator, key) != value
    }
    if generator.builtin and changes.keys() & {"name", "slug", "family", "is_active"}:
        raise RegistryError(f'"{generator.name}" is built in: only its description and release can change.')
    for key, value in changes.items():
        setattr(generator, key, value)
    if changes:
        generator.full_clean()
        generator.save()
        audit_record(
            actor=actor, action="generator_update", target=generator, detail={"changed": sorted(changes)}
        )
    return generator


def generator_delete(*, actor: Actor, generator: Generator) -> None:
    """Delete a generator and its reference images (heads trained on it keep their own copy)."""
    if generator.builtin:
        raise RegistryError(f'"{generator.name}" is built in and cannot be deleted.')
    names = list(generator.references.values_list("image", flat=True))
    audit_record(actor=actor, action="generator_delete", target=generator, detail={"slug": generator.slug})
    generator.delete()
    def delete_files() -> None:
        for name in names:
            default_storage.delete(name)

    transaction.on_commit(delete_files)
