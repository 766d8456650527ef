"""Letter template + recipient → Markdown → HTML for the email, plain text, and HTML for the PDF.

A letter is a Markdown file with YAML front matter and Jinja2 placeholders. The template runs first,
in a sandbox with `StrictUndefined`; every value it prints is escaped for Markdown, so a cell holding
`<b>`, `*x*` or `[^1]` shows as typed. Markdown (with footnotes, numbered in the order of their first
call in this recipient's letter) then gives a `MergedLetter` three renderings: email HTML with
endnotes, plain text with `[1]` markers, and PDF HTML with each note inline for `float: footnote`.
French typography applies to text nodes only. Line numbers in errors are those of the letter file,
front matter included.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from difflib import get_close_matches
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import jinja2
import yaml
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from mdit_py_plugins.footnote import footnote_plugin

from campaign.errors import HelperError, Place, Problem, TemplateError
from campaign.i18n import _, quoted
from campaign.markdownshape import ShapeCache
from campaign.plaintext import fill as _wrap
from campaign.plaintext import plain_text as _plain_text
from campaign.typography import date_fr, french
from campaign.yamlerrors import explain as explain_yaml

FRONT_MATTER_KEYS = {
    "subject",
    "place",
    "date",
    "signature",
    "stylesheet",
    "email_body",
    "title",
    "address",
}
# Front matter values that are templates, merged for each recipient into `MergedLetter.fields`.
TEXT_FIELDS = ("subject", "place", "signature", "title", "address")
# The front matter values that are templates, checked and dry-merged by `check`.
FRONT_TEMPLATES = (*TEXT_FIELDS, "date")
_MARKDOWN_PUNCTUATION = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")
_FOOTNOTE_CALL = re.compile(r"\[\^([^\]\s]+)\](?!:)")
_FOOTNOTE_DEF = re.compile(r"^ {0,3}\[\^([^\]\s]+)\]:", re.MULTILINE)


def escape_markdown(value: object) -> str:
    """Make any value plain text in Markdown: punctuation escaped, line breaks kept as breaks."""
    if value is None:
        return ""
    text = _MARKDOWN_PUNCTUATION.sub(r"\\\1", str(value))
    lines = [line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\\\n".join(lines)


def _plain(value: object) -> object:
    return "" if value is None else value


# The longest text (or list) a template may make by repeating one (`{{ nom * 100000 }}`): a
# letter is a few thousand characters, and WeasyPrint takes minutes to lay out a million.
MAX_REPEATED = 10_000


class _Sandbox(SandboxedEnvironment):
    """Jinja2's sandbox, which also refuses to repeat a text or a list into a huge one."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for items, times in ((left, right), (right, left)):
                if (
                    isinstance(items, str | list | tuple)
                    and isinstance(times, int)
                    and len(items) * times > MAX_REPEATED
                ):
                    raise SecurityError(
                        _("a text repeated into {n} characters (at most {most})").format(
                            n=len(items) * times, most=MAX_REPEATED
                        )
                    )
        if operator == "**" and isinstance(right, int) and abs(right) > 100:
            raise SecurityError(_("a power of more than 100"))
        return super().call_binop(context, operator, left, right)


def make_environment(*, markdown: bool) -> SandboxedEnvironment:
    """A sandboxed Jinja2 environment; in Markdown templates every printed value is escaped."""
    from campaign import typography  # the helpers templates may call

    env = _Sandbox(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=escape_markdown if markdown else _plain,
    )
    env.filters.update(typography.FILTERS)
    env.globals.update(typography.GLOBALS)
    return env


_MARKDOWN_ENV = make_environment(markdown=True)
_TEXT_ENV = make_environment(markdown=False)


def markdown_parser() -> MarkdownIt:
    """A CommonMark parser with footnotes and tables, whose HTML applies French typography."""
    parser = MarkdownIt("commonmark", {"typographer": False}).use(footnote_plugin).enable("table")
    parser.add_render_rule("text", _render_text)
    parser.add_render_rule("footnote_caption", _render_caption)
    return parser


def _render_text(
    self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Mapping[str, Any]
) -> str:
    return escapeHtml(french(tokens[idx].content))


def _render_caption(
    self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Mapping[str, Any]
) -> str:
    return str(tokens[idx].meta["id"] + 1)


def _render_inline_footnote(
    self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Mapping[str, Any]
) -> str:
    """A footnote call in the PDF: the note itself, which CSS floats to the page's foot."""
    meta = tokens[idx].meta
    number = meta["id"] + 1
    if meta.get("subId", 0) > 0:  # a second call of the same note refers to it by number
        return f'<sup class="footnote-again">{number}</sup>'
    return f'<span class="footnote">{env["footnote_html"].get(number, "")}</span>'


_PARSER = markdown_parser()
_SHAPES = ShapeCache(_PARSER)
_EMAIL = markdown_parser()
_PDF = markdown_parser()
_PDF.add_render_rule("footnote_ref", _render_inline_footnote)
# A source line break is a space in the PDF: WeasyPrint keeps a newline inside a footnote as a
# line break (the notes came out ragged, broken where the Markdown source was). A hard break
# (two spaces or a backslash at the end of the line) still gives <br>.
_PDF.add_render_rule("softbreak", lambda self, tokens, idx, options, env: " ")
_PDF_RENDERER = cast(RendererHTML, _PDF.renderer)


def _body_tokens(tokens: list[Token]) -> list[Token]:
    """The tokens of the letter without its block of footnote texts."""
    body: list[Token] = []
    depth = 0
    for token in tokens:
        if token.type == "footnote_block_open":
            depth += 1
        elif token.type == "footnote_block_close":
            depth -= 1
        elif depth == 0:
            body.append(token)
    return body


def _footnote_bodies(tokens: list[Token]) -> dict[int, list[Token]]:
    """Each footnote's tokens, keyed by its number (1 for the first called)."""
    bodies: dict[int, list[Token]] = {}
    current: list[Token] | None = None
    for token in tokens:
        if token.type == "footnote_open":
            current = bodies.setdefault(token.meta["id"] + 1, [])
        elif token.type == "footnote_close":
            current = None
        elif current is not None and token.type != "footnote_anchor":
            current.append(token)
    return dict(sorted(bodies.items()))


@dataclass(frozen=True)
class Letter:
    """A parsed letter template: its front matter and its compiled body."""

    path: Path
    display: str
    front: Mapping[str, Any]
    body: str  # the body, front matter replaced by blank lines so that line numbers match the file
    body_line: int  # the file line where the body starts

    @cached_property
    def template(self) -> jinja2.Template:
        return _compile(_MARKDOWN_ENV, self.body, self.display)

    @cached_property
    def _text_templates(self) -> dict[str, jinja2.Template | None]:
        return {}

    def text_template(self, key: str) -> jinja2.Template | None:
        """A front-matter value (subject, place ...) compiled as a plain-text template, once."""
        if key not in self._text_templates:
            value = self.front.get(key)
            self._text_templates[key] = (
                None
                if value is None or isinstance(value, date)
                else _compile(
                    _TEXT_ENV,
                    str(value),
                    _("{file} (front matter {key})").format(file=self.display, key=key),
                )
            )
        return self._text_templates[key]


@dataclass(frozen=True)
class MergedLetter:
    """One recipient's letter, merged: its Markdown and front matter values, and its renderings.

    The renderings are computed on first use, so that a dry merge (`check`) costs only Jinja:
    `html` (the email body, footnotes as endnotes with ↩ links back), `text` (the plain-text email
    body, `[1]` markers and the notes at the end) and `pdf_html` (footnote texts inline in
    `<span class="footnote">`, for CSS `float: footnote`). French typography applies to the text
    of all three, never to tags, attributes or URLs.
    """

    markdown: str
    fields: Mapping[str, str] = field(default_factory=dict)
    dated: bool = False  # the front matter gives a date: the email shows it with the place

    @cached_property
    def sign_off(self) -> tuple[str, list[str]]:
        """What an email ends with, as the letter does: "Paris, le 7 mai 2020" and the signature.

        The PDF prints them from `fields` in its own blocks; the email parts add them after the
        body (before the notes), so that an email-only campaign is signed too.
        """
        place = self.fields.get("place", "")
        when = self.fields.get("date", "") if self.dated else ""
        dateline = f"{place}, le {when}" if place and when else place or when
        signature = [line.strip() for line in self.fields.get("signature", "").splitlines()]
        return dateline, [line for line in signature if line]

    @cached_property
    def _parsed(self) -> tuple[list[Token], dict[str, Any]]:
        return _SHAPES.parse(self.markdown)  # what _PARSER.parse gives, parsed once per shape

    @cached_property
    def footnotes(self) -> list[str]:
        """The plain text of each footnote, in the order of their first call."""
        tokens, _ = self._parsed
        return [_plain_text(body, wrap=False) for body in _footnote_bodies(tokens).values()]

    @cached_property
    def html(self) -> str:
        tokens, env = self._parsed
        env = dict(env)
        notes = next((i for i, t in enumerate(tokens) if t.type == "footnote_block_open"), None)
        cut = len(tokens) if notes is None else notes
        body = str(_EMAIL.renderer.render(tokens[:cut], _EMAIL.options, env))
        rest = (
            str(_EMAIL.renderer.render(tokens[cut:], _EMAIL.options, env))
            if notes is not None
            else ""
        )
        dateline, signature = self.sign_off
        if dateline:
            body += f'<p class="place-date">{escapeHtml(dateline)}</p>\n'
        if signature:
            body += f'<p class="signature">{"<br>".join(map(escapeHtml, signature))}</p>\n'
        return body + rest

    @cached_property
    def pdf_html(self) -> str:
        tokens, env = self._parsed
        env = dict(env)
        env["footnote_html"] = {
            number: "<br>".join(
                _PDF_RENDERER.renderInline(t.children or [], _PDF.options, env)
                for t in body
                if t.type == "inline"
            )
            for number, body in _footnote_bodies(tokens).items()
        }
        return _PDF_RENDERER.render(_body_tokens(tokens), _PDF.options, env)

    @cached_property
    def text(self) -> str:
        tokens, _ = self._parsed
        text = _plain_text(_body_tokens(tokens)).strip()
        dateline, signature = self.sign_off
        for block in ([dateline] if dateline else [], signature):
            if block:
                text += "\n\n" + "\n".join(block)
        notes = self.footnotes
        if notes:
            text += "\n\n" + "\n".join(
                _wrap(f"[{n}] {note}", indent=" " * (len(str(n)) + 3))
                for n, note in enumerate(notes, start=1)
            )
        return text + "\n"


def load_letter(path: Path, *, display: str | None = None) -> Letter:
    """Read a letter template; malformed front matter or template syntax is a `TemplateError`."""
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TemplateError(_("letter not found"), place=Place(file=shown)) from None
    except UnicodeDecodeError:
        raise TemplateError(
            _("the letter is not UTF-8 text"), place=Place(file=shown), hint=_("save it as UTF-8")
        ) from None
    text = text.replace("\r\n", "\n")
    front: dict[str, Any] = {}
    body = text
    body_line = 1
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end < 0:
            raise TemplateError(
                _("front matter opened with --- but never closed"),
                place=Place(file=shown, line=1),
                hint=_("end the front matter with a line holding only ---"),
            )
        raw_front = text[4:end]
        try:
            loaded = yaml.safe_load(raw_front) or {}
        except yaml.YAMLError as err:
            said = explain_yaml(err)
            raise TemplateError(
                _("front matter is not valid YAML: {problem}").format(problem=said.problem),
                place=Place(file=shown, line=said.line + 1 if said.line is not None else 1),
                hint=said.hint,
            ) from None
        if not isinstance(loaded, dict):
            raise TemplateError(
                _("front matter must be keys and values"), place=Place(file=shown, line=2)
            )
        unknown = sorted(set(map(str, loaded)) - FRONT_MATTER_KEYS)
        if unknown:
            raise TemplateError(
                _("unknown front matter key {key}").format(key=quoted(unknown[0])),
                place=Place(file=shown, line=_line_of_key(raw_front, unknown[0]) + 1),
                hint=_("the keys are: {keys}").format(keys=", ".join(sorted(FRONT_MATTER_KEYS))),
            )
        front = {str(k): v for k, v in loaded.items()}
        after = text.find("\n", end + 1)
        consumed = text[: after + 1] if after >= 0 else text
        body_line = consumed.count("\n") + 1
        body = "\n" * (body_line - 1) + (text[after + 1 :] if after >= 0 else "")
    letter = Letter(path=path, display=shown, front=front, body=body, body_line=body_line)
    _compiled = letter.template  # compile now: a syntax error is reported before any row is merged
    for key in TEXT_FIELDS:
        letter.text_template(key)
    return letter


def _line_of_key(front: str, key: str) -> int:
    for number, line in enumerate(front.split("\n"), start=1):
        if line.startswith(f"{key}:"):
            return number
    return 1


def _compile(env: SandboxedEnvironment, source: str, shown: str) -> jinja2.Template:
    try:
        template = env.from_string(source)
    except jinja2.TemplateSyntaxError as err:
        raise TemplateError(
            _("template syntax error: {error}").format(error=err.message),
            place=Place(file=shown, line=err.lineno),
            hint=_("check the {{ }} and {% %} around this line"),
        ) from None
    if not template_variables(source):  # it parsed: the two environments share a syntax
        _FIXED[template] = None  # the same text for everyone: rendered once, when first asked
    return template


# The templates that read no variable (a fixed place, signature or subject: the helpers are pure
# functions of what they are given), each with its text once rendered.
_FIXED: weakref.WeakKeyDictionary[jinja2.Template, str | None] = weakref.WeakKeyDictionary()


def compile_text(source: str, shown: str) -> jinja2.Template:
    """Compile a plain-text template such as a subject line or a display name."""
    return _compile(_TEXT_ENV, source, shown)


def template_variables(source: str) -> set[str]:
    """The variables a template reads, without those it sets itself or the helpers."""
    try:
        parsed = _TEXT_ENV.parse(source)
    except jinja2.TemplateSyntaxError:
        return set()
    return set(meta.find_undeclared_variables(parsed)) - set(_TEXT_ENV.globals)


def template_problems(
    source: str, shown: str, known: Iterable[str], headers: Iterable[str] = ()
) -> list[Problem]:
    """Placeholders no column provides (once each, with their line), or a syntax error.

    These fail every row alike; `footnote_problems` (a letter's structure) is checked apart.
    """
    problems: list[Problem] = []
    known_names = set(known) | set(_TEXT_ENV.globals) | {"row", "row_number", "letter", "sender"}
    try:
        parsed = _TEXT_ENV.parse(source)
    except jinja2.TemplateSyntaxError as err:
        return [
            Problem.error(
                _("template syntax error: {error}").format(error=err.message),
                Place(file=shown, line=err.lineno),
            )
        ]
    undeclared = set(meta.find_undeclared_variables(parsed)) - known_names
    first_line: dict[str, int] = {}
    for name_node in parsed.find_all(nodes.Name):
        if name_node.name in undeclared and name_node.ctx == "load":
            first_line.setdefault(name_node.name, name_node.lineno)
    candidates = sorted(set(known) | set(headers))
    called = {
        call.node.name
        for call in parsed.find_all(nodes.Call)
        if isinstance(call.node, nodes.Name) and call.node.name in undeclared
    }
    helpers = sorted(n for n, v in _TEXT_ENV.globals.items() if callable(v))
    for name in sorted(undeclared, key=lambda n: first_line.get(n, 0)):
        if name in called:  # {{ salutaton(...) }}: a misspelt helper, not a missing column
            close = get_close_matches(name, helpers, n=1, cutoff=0.6)
            message = _("{helper} is not a helper of the letters").format(helper=f"{name}(...)")
            hint = (
                _("did you mean {name}?").format(name=f"{close[0]}(...)")
                if close
                else _("the helpers are: {helpers}").format(
                    helpers=", ".join(f"{h}(...)" for h in helpers)
                )
            )
        else:
            close = get_close_matches(name, candidates, n=1, cutoff=0.6)
            message = _("placeholder {placeholder} matches no column of the spreadsheet").format(
                placeholder="{{ " + name + " }}"
            )
            hint = (
                _("did you mean {name}?").format(name="{{ " + close[0] + " }}")
                if close
                else _("add a column of that name to the spreadsheet")
            )
        problems.append(Problem.error(message, Place(file=shown, line=first_line.get(name)), hint))
    return problems


def footnote_problems(source: str, shown: str) -> list[Problem]:
    """A footnote called without its text, or a footnote text never called."""
    defined: dict[str, int] = {}
    for match in _FOOTNOTE_DEF.finditer(source):
        defined.setdefault(match.group(1), source.count("\n", 0, match.start()) + 1)
    called: dict[str, int] = {}
    for match in _FOOTNOTE_CALL.finditer(source):
        called.setdefault(match.group(1), source.count("\n", 0, match.start()) + 1)
    problems = [
        Problem.error(
            _("footnote {label} is called but has no text").format(label=f"[^{label}]"),
            Place(file=shown, line=line),
            _("add a line {line} at the end of the letter").format(
                line=f"'[^{label}]: " + _("the note") + "'"
            ),
        )
        for label, line in called.items()
        if label not in defined
    ]
    problems += [
        Problem.error(
            _("footnote {label} has a text but is never called").format(label=f"[^{label}]"),
            Place(file=shown, line=line),
            _("cite it with {label} in the text, or delete it").format(label=f"[^{label}]"),
        )
        for label, line in defined.items()
        if label not in called
    ]
    return problems


def merge_letter(letter: Letter, context: Mapping[str, Any]) -> MergedLetter:
    """Merge one recipient into the letter; a failure is a `TemplateError` naming the line.

    Only Jinja runs here; Markdown is parsed when a rendering (`html`, `text`, `pdf_html`) is
    first asked for.
    """
    fields: dict[str, str] = {}
    for key in TEXT_FIELDS:
        template = letter.text_template(key)
        if template is not None:
            value = render_template(template, context, letter.display).strip()
            fields[key] = value if key == "address" else french(value)
    fields["date"] = letter_date(letter, context)
    markdown = render_template(letter.template, context, letter.display)
    return MergedLetter(markdown=markdown, fields=fields, dated="date" in letter.front)


def letter_date(letter: Letter, context: Mapping[str, Any]) -> str:
    """The letter's date in French: the front matter's `date` (a date or a template), or today."""
    value = letter.front.get("date")
    if value is None:
        return date_fr(date.today())
    template = letter.text_template("date")  # None when YAML read a date such as 2020-05-07
    if template is not None:
        value = render_template(template, context, letter.display)
    try:
        return date_fr(value)
    except ValueError as err:
        raise TemplateError(
            _("front matter date: {error}").format(error=err),
            place=Place(file=letter.display, line=front_matter_line(letter, "date")),
            hint=_("write the date as {example}").format(example="2020-05-07"),
        ) from None


def front_matter_line(letter: Letter, key: str) -> int:
    """The file line of a front matter key."""
    try:  # the front matter is blanked in the body: read the file again
        front = letter.path.read_text(encoding="utf-8-sig")
    except OSError:
        return 1
    return _line_of_key(front, key)


def render_template(template: jinja2.Template, context: Mapping[str, Any], shown: str) -> str:
    """Render a compiled template; undefined names and sandbox violations name the line."""
    fixed = template in _FIXED
    if fixed:
        text = _FIXED[template]
        if text is not None:
            return text
    try:
        text = render_merged(template, {**template.globals, **context})
    except Exception:  # rendered again the documented way, which says what went wrong
        text = _render_reported(template, context, shown)
    if fixed:
        _FIXED[template] = text
    return text


def _render_reported(template: jinja2.Template, context: Mapping[str, Any], shown: str) -> str:
    """`template.render`, its failures said as `TemplateError`s that name the template line."""
    try:
        return template.render(context)
    except jinja2.UndefinedError as err:
        raise TemplateError(
            _("undefined placeholder: {error}").format(error=err.message),
            place=Place(file=shown, line=_error_line(err)),
            hint=_("check the spelling against the spreadsheet's headers"),
        ) from None
    except SecurityError as err:
        raise TemplateError(
            _("the template tried something the sandbox forbids: {error}").format(error=err),
            place=Place(file=shown, line=_error_line(err)),
            hint=_(
                "templates may only read the recipient's values and call the documented helpers"
            ),
        ) from None
    except jinja2.TemplateError as err:
        raise TemplateError(
            _("template error: {error}").format(error=err),
            place=Place(file=shown, line=_error_line(err)),
        ) from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as err:
        raise TemplateError(
            _("template error: {error}").format(error=python_error(err)),
            place=Place(file=shown, line=_error_line(err)),
        ) from None


def python_error(err: Exception) -> str:
    """What an expression of the template ran into, in the organiser's words.

    Python's own text follows in brackets (it is English, and it is what whoever helps the
    organiser will search for); a helper's refusal is already written for the organiser.
    """
    if isinstance(err, HelperError):
        return str(err)
    if isinstance(err, ZeroDivisionError):
        what = _("a division by zero")
    elif isinstance(err, RecursionError):
        what = _("a macro or an include that calls itself without end")
    elif isinstance(err, ArithmeticError):
        what = _("a calculation that cannot be done")
    elif isinstance(err, TypeError):
        what = _(
            "values that do not go together in this operation (a number and a text, for instance)"
        )
    elif isinstance(err, ValueError):
        what = _(
            "a value that cannot be read as asked (a text where a number is expected, for instance)"
        )
    elif isinstance(err, LookupError):
        what = _("an element that is not there (a position or a key beyond the value)")
    else:
        what = _("an expression that failed")
    return _("{what} (Python: {detail})").format(what=what, detail=err)


def render_merged(template: jinja2.Template, merged: dict[str, Any]) -> str:
    """Render with the template's globals already merged under the values (`{**globals, **values}`).

    `template.render` builds that context on every call, copying the globals' names into a set
    as well: ~5 µs of the 7 a display name takes. The compiled template, its sandbox checks and
    its finalizer are the same; only the context is built here. Any exception: render again with
    `render_template`'s own path, which says what went wrong and where.
    """
    environment = template.environment
    # globals=None: the helpers are in `merged` already.
    state = environment.context_class(environment, merged, template.name, template.blocks)
    return "".join(template.root_render_func(state))


def _error_line(err: BaseException) -> int | None:
    """The template line of an exception raised while rendering, from its traceback."""
    line = None
    tb = err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
