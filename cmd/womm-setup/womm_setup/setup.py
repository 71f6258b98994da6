"""`womm setup`: choose the share, make it work in a testbed, save the testbed as the image.

Nothing is written until the end: Ctrl-C at any prompt, or "n" to "Does it
work?", leaves ~/.womm as it was. Every question has a flag; a question without
an answer and without a terminal to ask it on is an error, not a guess.
"""

import os
import sys
import time

from womm import docker_engine, records, tasks
from womm.errors import UsageError, WommError
from womm.report import say as log
from womm.settings import resolve
from womm_setup.testbed import Caller, Testbed

SHARE_MENU = [
    ("lazy", "lazily"),
    ("eager", "eagerly (no syncback)"),
    ("eager-syncback", "eagerly (syncback on complete, not recommended)"),
    ("none", "not at all"),
]
DEFAULT_BASE = "ubuntu:22.04"
BANNER = (
    "This is a *local* shell where any dependencies you install will be saved.\n"
    "The goal is that if your application works here, it will work on the cloud too.\n"
    "Make it work!\n"
    "Also make sure our dependencies are installed: a POSIX sh and sleep (nothing else)"
)


class Quit(Exception):
    pass


class Asker:
    """Questions on the terminal; defaults with --yes; an error where nobody can answer."""

    def __init__(self, yes):
        self.yes = yes
        self.interactive = sys.stdin.isatty()

    def ask(self, question, default=None, flag=None):
        if self.yes and default is not None:
            return default
        if not self.interactive:
            if default is not None:
                return default
            raise UsageError(f"womm setup has no terminal to ask: {question.splitlines()[0]}"
                             + (f" (give {flag})" if flag else ""))
        sys.stderr.write(question + "\n" + (f"[{default}] > " if default is not None else "> "))
        sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:
            raise KeyboardInterrupt  # end of input: nobody is there to answer
        return line.strip() or default or ""

    def yes_no(self, question, default):
        while True:
            answer = self.ask(f"{question} y/n", "y" if default else "n").lower()
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no"):
                return False


def clear_prefix(args):
    records.set_setting("prefix", None)
    log("forgot the registry prefix; the next `womm setup` asks for one")
    return 0


def ask_share(asker, directory):
    menu = "\n".join(f"{i}) {label}" for i, (_, label) in enumerate(SHARE_MENU, 1))
    answer = asker.ask(f"How do you want to share {directory} to your cloud?\n{menu}\n*) never mind, quit", "*", "--share")
    for i, (kind, _) in enumerate(SHARE_MENU, 1):
        if answer in (str(i), kind):
            return kind
    raise Quit()


def setup(args):
    cwd = os.getcwd()
    try:
        return _setup(args, cwd)
    except Quit:
        log("never mind: nothing changed")
        return 0


def _setup(args, cwd):
    project = records.load_project(cwd)
    if args.local_shell:
        return local_shell(args, project, cwd)
    new = project is None
    p = dict(project or {})
    asker = Asker(args.yes)
    if not new:
        log(f"{cwd} is set up: share {p.get('share')}, image {p.get('image')}, namespace "
            f"{p.get('namespace') or '(the context’s)'}, pull secret {p.get('pull_secret') or 'none'}")
    _choose_share(args, asker, p, new, cwd)
    _choose_kubernetes(args, asker, p, new)
    rebuild, edit = _choose_image(args, asker, p, new)
    prefix = _prefix(args, asker, needed=rebuild or edit)
    p.setdefault("share_id", tasks.new_id())
    if rebuild or edit:
        saved = build_image(args, asker, p, cwd, prefix, source=p["base_image"] if rebuild else p["image"])
        if saved:
            p["image"], p["platform"] = saved
    if not p.get("image"):
        raise UsageError("no image yet: give --base-image (or --image)")
    if not p.get("platform"):  # a new --image, or a project set up by a womm that did not record it
        p["platform"] = docker_engine.image_platform(p["image"])

    records.save_project(cwd, p)
    if prefix and prefix != records.load_settings().get("prefix") and not os.environ.get("WOMM_PREFIX"):
        records.set_setting("prefix", prefix)
    platform = f"for {p['platform']}, " if p.get("platform") else ""
    log(f"ready: `womm parallel --kube-pods N -- command` runs here with {p['image']} ({platform}{p['share']} share)")
    return 0


def _choose_share(args, asker, p, new, cwd):
    """1. the share"""
    if args.share:
        p["share"] = args.share
    elif new:
        p["share"] = ask_share(asker, cwd)
    elif asker.yes_no(f"Change the share type (now {p.get('share')})?", False):
        p["share"] = ask_share(asker, cwd)
    if p.get("share") == "lazy":
        log(LAZY_NODE_ROOT)


# Said plainly wherever a lazy share is chosen (womm setup, womm doctor, the README).
LAZY_NODE_ROOT = ("a lazy share runs a privileged container in each pod (FUSE needs it): whoever may exec into "
                  "the namespace's pods is root on their nodes; choose an eager share where that matters")


def _choose_kubernetes(args, asker, p, new):
    """2. the Kubernetes settings"""
    if args.namespace is not None:
        p["namespace"] = args.namespace or None
    if args.pull_secret is not None:
        p["pull_secret"] = args.pull_secret or None
    if args.context is not None:
        p["context"] = args.context or None
    if not new and args.namespace is None and args.pull_secret is None and asker.yes_no(
        "Change the Kubernetes settings (namespace, image pull secret)?", False
    ):
        p["namespace"] = asker.ask("Namespace ('-' for the current context's)?", p.get("namespace") or "-")
        p["namespace"] = None if p["namespace"] in ("", "-") else p["namespace"]
        p["pull_secret"] = asker.ask("Image pull secret ('-' for none)?", p.get("pull_secret") or "-")
        p["pull_secret"] = None if p["pull_secret"] in ("", "-") else p["pull_secret"]


def _choose_image(args, asker, p, new):
    """3. the image: a new one from a base image, or the current one edited; (rebuild, edit)."""
    if args.image:
        if args.image != p.get("image"):
            p["image"], p["platform"] = args.image, None  # its platform: found below
        return False, False
    if args.base_image and (new or args.base_image != p.get("base_image")):
        p["base_image"] = args.base_image
        return True, False
    if new:
        p["base_image"] = asker.ask(
            "What is the docker hub name for the base image for your operating system?", DEFAULT_BASE, "--base-image"
        )
        return True, False
    if args.edit_image or args.script:
        return False, True
    if asker.yes_no(f"Start a new image from another base image (now {p.get('base_image')})?", False):
        p["base_image"] = asker.ask("What is the docker hub name for the base image?", p.get("base_image"))
        return True, False
    return False, asker.yes_no("Edit the image?", False)


def _prefix(args, asker, needed):
    """4. the registry prefix the image is pushed under (asked once, when an image is made)."""
    prefix = resolve("prefix", args.prefix)
    if needed and not prefix:
        prefix = asker.ask(
            "What is a prefix of a docker image name that you are authorized to push to a secure location?\n"
            "e.g. 'us-west4-docker.pkg.dev/angr-ci/defcon/'", None, "--prefix",
        )
        if not prefix:
            raise UsageError("no registry prefix given")
    return prefix


def build_image(args, asker, p, cwd, prefix, source):
    """Run the testbed from `source`; the pushed image and its platform, or None when nothing changed."""
    client = docker_engine.client()
    testbed = Testbed(client, source, cwd, p["share"] != "none", Caller(), log)
    try:
        if args.script:
            text = sys.stdin.read() if args.script == "-" else _read(args.script)
            status = testbed.script(text)
            if status != 0:
                raise WommError(f"the script failed (exit status {status}): nothing was saved")
        else:
            if not sys.stdin.isatty():
                raise UsageError("the testbed shell needs a terminal: run womm setup in one, or give --script FILE")
            print(BANNER, file=sys.stderr, flush=True)
            testbed.shell()
        testbed.check_runtime()
        env = testbed.exported()
        if not asker.yes_no("Does it work?", True):
            raise WommError("nothing was saved: run womm setup again once it works")
        testbed.remove_noise()
        if source == p.get("image") and not testbed.changed(env):
            log(f"no changes: the image stays {source}")
            return None
        return save(client, testbed, p, prefix, env)
    finally:
        testbed.remove()


def save(client, testbed, p, prefix, env):
    """The testbed committed as the project's next image and pushed: (its reference, its platform)."""
    repository = f"{prefix}womm-image-{p['share_id']}"
    tag = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    image = testbed.commit(repository, tag, env)
    reference = f"{repository}:{tag}"
    log(f"saved {reference} ({image.short_id}); pushing it")
    docker_engine.push(client, reference)
    return reference, docker_engine.platform(image.attrs)


def local_shell(args, p, cwd):
    """`womm shell --local`: the image here, this directory mounted; save changes if asked."""
    if p is None:
        raise WommError(f"{cwd} is not set up for womm: run `womm setup` here first")
    client = docker_engine.client()
    testbed = Testbed(client, p["image"], cwd, p["share"] != "none", Caller(), log)
    try:
        if args.run:
            status = testbed.script(args.run + "\n")
        else:
            status = testbed.shell()
        env = testbed.exported()
        testbed.remove_noise()
        if not testbed.changed(env):
            return status
        asker = Asker(args.yes)
        if not asker.yes_no("You changed the image. Save the changes into it (and push it)?", args.yes):
            log("changes not saved")
            return status
        prefix = resolve("prefix", args.prefix)
        if not prefix:
            raise UsageError("no registry prefix to push to: run `womm setup` first")
        reference, platform = save(client, testbed, p, prefix, env)
        records.save_project(cwd, dict(p, image=reference, platform=platform))
        return status
    finally:
        testbed.remove()


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read the script {path}: {e.strerror}") from None
