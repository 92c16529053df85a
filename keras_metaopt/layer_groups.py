"""Map the variables of a keras-hub encoder classifier to layer groups."""

import re

import keras

from keras_metaopt.group_names import EMBEDDINGS, HEAD, LAYER_PREFIX

DEFAULT_RULES = (
    (
        r"^(embeddings|token_and_position_embedding|token_embedding"
        r"|position_embedding|segment_embedding|embeddings_layer_norm)/",
        EMBEDDINGS,
    ),
    (rf"^{LAYER_PREFIX}(\d+)/", rf"{LAYER_PREFIX}\1"),
    (r"^(pooled_dense|logits)/", HEAD),
)


@keras.saving.register_keras_serializable(package="keras_metaopt")
class LayerGroups:
    """Assigns each variable to a layer group by regex rules on its path.

    The default rules cover keras-hub's BERT, XLM-RoBERTa and DistilBERT
    classifiers: `embeddings` (token, position, segment embeddings and their
    LayerNorm), one group per `transformer_layer_{i}`, and `head` (pooler and
    classification layer). The first matching rule wins; a rule's group name
    may use the match's groups (`\\1`). Frozen groups get no update at all.

    Args:
        rules: Sequence of `(regex, group_name)` pairs, searched on
            `variable.path`. Defaults to `DEFAULT_RULES`.
        frozen: Names of the groups that are not trained (the paper freezes
            the embeddings).

    Example:

    >>> groups = LayerGroups(frozen=("embeddings",))
    >>> groups.group_of_path("transformer_layer_3/self_attention_layer/query/kernel")
    'transformer_layer_3'
    >>> groups.group_of_path("token_embedding/embeddings")
    'embeddings'
    """

    def __init__(self, rules=None, frozen=(EMBEDDINGS,)):
        rules = DEFAULT_RULES if rules is None else rules
        self.rules = []
        for rule in rules:
            if not (isinstance(rule, (tuple, list)) and len(rule) == 2):
                raise ValueError(
                    f"A layer-group rule must be a (regex, group_name) pair; got {rule!r}."
                )
            pattern, group = rule
            try:
                compiled = re.compile(pattern)
            except re.error as e:
                raise ValueError(f"Bad regex in layer-group rule {rule!r}: {e}") from e
            refs = [int(n) for n in re.findall(r"\\(\d+)", group)]
            if refs and max(refs) > compiled.groups:
                raise ValueError(
                    f"Layer-group rule {rule!r} refers to \\{max(refs)} but its "
                    f"regex has only {compiled.groups} capture group(s)."
                )
            self.rules.append((compiled, group))
        self.frozen = tuple(frozen)
        for name in self.frozen:
            if not any(_template_regex(g).fullmatch(name) for _, g in self.rules):
                raise ValueError(
                    f"Frozen group '{name}' is not a group any rule produces; "
                    f"rule groups: {[g for _, g in self.rules]}."
                )

    def group_of_path(self, path):
        """Returns the group name of a variable path, or raises ValueError."""
        for pattern, group in self.rules:
            match = pattern.search(path)
            if match:
                return match.expand(group)
        raise ValueError(
            f"Variable '{path}' is in no layer group. Rules: "
            f"{[(p.pattern, g) for p, g in self.rules]}. Add a rule for it."
        )

    def assign(self, variables):
        """Splits `variables` into trained and frozen ones.

        Returns:
            `(group_names, active, active_groups)`: the ordered names of the
            trained groups (order of first appearance), the trained variables,
            and for each of them the index of its group in `group_names`.
        """
        group_names, active, active_groups = [], [], []
        for variable in variables:
            group = self.group_of_path(_path(variable))
            if group in self.frozen:
                continue
            if group not in group_names:
                group_names.append(group)
            active.append(variable)
            active_groups.append(group_names.index(group))
        if not active:
            raise ValueError("Every variable is in a frozen group: nothing to train.")
        return group_names, active, active_groups

    def get_config(self):
        return {
            "rules": [(p.pattern, g) for p, g in self.rules],
            "frozen": list(self.frozen),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _template_regex(group):
    """`transformer_layer_\\1` -> a regex matching the names it can produce."""
    parts = re.split(r"\\\d+", group)
    return re.compile(".+".join(re.escape(p) for p in parts))


def _path(variable):
    return getattr(variable, "path", None) or variable.name
