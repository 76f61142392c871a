""".dockerignore matching: moby patternmatcher's cases (ported as data), file parsing and exceptions."""

from __future__ import annotations

import pytest

import errdefs
from images_svc.build.ignore import PatternMatcher, read_dockerignore

# (pattern, path, ignored): single-pattern cases from moby/patternmatcher's TestMatches table,
# judged the way the CLI walks a context (a pattern matching a parent dir matches below it).
SINGLE = [
    ("**", "file", True), ("**", "file/", True), ("**/", "file", True), ("**", "/", True),
    ("**", "dir/file", True), ("**/", "dir/file/", True), ("**/**", "dir/file", True),
    ("dir/**", "dir/file", True), ("dir/**", "dir/dir2/file/", True), ("**/dir", "dir", True),
    ("**/dir", "dir/file", True), ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True), ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**file", "file", True), ("**file", "dir/file", True), ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True), ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True), ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False), ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True), ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True), ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True), ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False), ("a[b-d]e", "ace", True), ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True), (".*", ".foo", True), (".*", "foo", False),
    ("abc.def", "abcdef", False), ("abc.def", "abc.def", True), ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True), ("abc?def", "abcdef", False), ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True), ("abc/**", "abc", False), ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True), ("**/.foo", ".foo", True), ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True), ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True), ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08-py3.whl", True),
    ("a\\\\", "a\\", True), ("a\\*b", "a*b", True),
]

# Go's filepath.Match cases the matcher must agree with.
GLOB = [
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True),
    ("a*", "ab/c", True), ("a*/b", "abc/b", True), ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True), ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True), ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True), ("ab[b-d]", "abc", True), ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False), ("ab[^e-g]", "abc", True), ("a\\*b", "ab", False),
    ("a?b", "a☺b", True), ("a[^a]b", "a☺b", True), ("a???b", "a☺b", False),
    ("[a-\u03b6]*", "\u03b1", True), ("*[a-\u03b6]", "A", False),
    ("a?b", "a/b", False), ("a*b", "a/b", False),
    ("[\\]a]", "]", True), ("[\\-]", "-", True), ("[x\\-]", "-", True), ("[x\\-]", "z", False),
    ("[\\-x]", "x", True), ("*x", "xxx", True),
]

BAD = ["[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[", "!"]


@pytest.mark.parametrize(("pattern", "path", "want"), SINGLE + GLOB)
def test_single_pattern(pattern: str, path: str, want: bool) -> None:
    assert PatternMatcher([pattern]).matches(path) is want


@pytest.mark.parametrize(
    ("patterns", "path", "want"),
    [
        (["**", "!util/docker/web"], "util/docker/web/foo", False),
        (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
        (["**", "!dist/*.whl"], "dist/x-1.0-py3-none-any.whl", False),
        (["!fileutils.go", "*.go"], "fileutils.go", True),
        (["*.go", "!fileutils.go"], "fileutils.go", False),
        (["docs", "!docs/README.md"], "docs/README.md", False),
        (["docs/", "!docs/README.md"], "docs/README.md", False),
        (["docs/*", "!docs/README.md"], "docs/README.md", False),
        (["docs", "!docs/README.md"], "docs/other.md", True),
        (["*.go"], ".", False),
        ([], "any/path/there", False),
    ],
)
def test_several_patterns(patterns: list[str], path: str, want: bool) -> None:
    assert PatternMatcher(patterns).matches(path) is want


@pytest.mark.parametrize("pattern", BAD)
def test_malformed_patterns(pattern: str) -> None:
    with pytest.raises(errdefs.InvalidArgument):
        PatternMatcher([pattern])


def test_exclusions_flag() -> None:
    assert PatternMatcher(["docs", "  !docs/README.md"]).exclusions
    assert not PatternMatcher(["docs", "config", ""]).exclusions
    assert len(PatternMatcher(["docs", "config", ""]).patterns) == 2


def test_read_dockerignore() -> None:
    text = b"# comment\n\n  *.md  \n!README.md\n/build\n./tmp/../out\n/\n\\#notcomment\n"
    assert read_dockerignore(text) == ["*.md", "!README.md", "build", "out", "/", "\\#notcomment"]
    pm = PatternMatcher(read_dockerignore(text))
    assert pm.matches("a.md") and not pm.matches("README.md")
    assert pm.matches("build/x") and not pm.matches("sub/build")
    assert pm.matches("out")
