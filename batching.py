"""
Collation: (ids, loss mask) examples into the tensors a training step reads, padded or packed.

    pad_batch(examples, pad_id, device)              one example a row, right-padded to the longest
    pack_batch(examples, pad_id, row_length, device) several examples a row, each seeing only itself

Padding wastes the positions after each short example (15% of SFT's tokens on the world, where a
micro-batch's chats differ in length). Packing fills rows of one fixed length, first-fit
decreasing, and gives each token the id of its example (its segment): the model's attention then
stays inside a segment and positions restart at each one (GPT.hidden_states' `segments`), so a
packed example computes what it would alone. One fixed row shape is also what lets a CPU's bf16
kernels pay (they are built per shape): measured in bench.py --only=precision.
"""

import torch


def pad_batch(examples, pad_id, device):
    """[(ids, loss mask)] (chats, or preferred replies) -> inputs x (B, T) and targets y (B, T),
    right-padded to the longest example; y is the next token where the mask is 1 and -1 (ignored)
    elsewhere, padding included."""
    T = max(len(ids) for ids, _ in examples) - 1
    x = torch.full((len(examples), T), pad_id, dtype=torch.long)
    y = torch.full((len(examples), T), -1, dtype=torch.long)
    for i, (ids, mask) in enumerate(examples):
        n = len(ids) - 1
        x[i, :n] = torch.tensor(ids[:-1])
        target = torch.tensor(ids[1:])
        y[i, :n] = torch.where(torch.tensor(mask[1:], dtype=torch.bool), target, -1)
    return x.to(device), y.to(device)


def pack_rows(lengths, row_length):
    """Indices of the examples in each row: first-fit decreasing (the longest example first, each
    into the first row with room), deterministic for the same lengths."""
    rows, room = [], []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if lengths[i] > row_length:
            raise ValueError(f"an example of {lengths[i]} tokens does not fit a row of {row_length}")
        row = next((r for r in range(len(rows)) if room[r] >= lengths[i]), None)
        if row is None:
            rows.append([])
            room.append(row_length)
            row = len(rows) - 1
        rows[row].append(i)
        room[row] -= lengths[i]
    return rows


def pack_batch(examples, pad_id, row_length, device):
    """[(ids, loss mask)] -> x, y as pad_batch makes them, and segments, all (R, row_length), with
    the examples packed into R rows (pack_sequences); segments: 1, 2, ... for each example of a row,
    in order, and 0 on the padding at the row's end."""
    # an example of n tokens gives n - 1 (input, target) positions: its inputs are what gets packed
    x, segments, where = pack_sequences([(ids[:-1], mask[1:]) for ids, mask in examples], pad_id, row_length,
                                        device)
    y = torch.full((x.size(0), row_length), -1, dtype=torch.long)
    for (r, start, n), (ids, mask) in zip(where, examples):
        y[r, start:start + n] = torch.where(torch.tensor(mask[1:], dtype=torch.bool), torch.tensor(ids[1:]), -1)
    return x, y.to(device), segments


def pad_right(sequences, pad_id, device):
    """[(ids, mask)] -> ids (B, T) right-padded with pad_id, and the masks (B, T), 0 on padding."""
    T = max(len(ids) for ids, _ in sequences)
    ids = torch.full((len(sequences), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), T), dtype=torch.bool)
    for i, (seq, m) in enumerate(sequences):
        ids[i, :len(seq)] = torch.tensor(seq)
        mask[i, :len(m)] = torch.tensor(m, dtype=torch.bool)
    return ids.to(device), mask.to(device)


def pack_sequences(sequences, pad_id, row_length, device):
    """[(ids, mask)] sequences -> ids (R, row_length) and segments (R, row_length) of packed rows
    (pack_rows), and where: (row, start, length) of each sequence, for unpack."""
    rows = pack_rows([len(ids) for ids, _ in sequences], row_length)
    ids = torch.full((len(rows), row_length), pad_id, dtype=torch.long)
    segments = torch.zeros((len(rows), row_length), dtype=torch.long)
    where = [None] * len(sequences)
    for r, members in enumerate(rows):
        start = 0
        for k, i in enumerate(members, 1):
            n = len(sequences[i][0])
            ids[r, start:start + n] = torch.tensor(sequences[i][0])
            segments[r, start:start + n] = k
            where[i] = (r, start, n)
            start += n
    return ids.to(device), segments.to(device), where


def unpack(packed, where):
    """Values of packed rows (R, row_length, ...) -> one sequence a row (n, longest, ...), in the
    order of the sequences, zero past each sequence's end. Indexing, so gradients flow back."""
    longest = max(n for _, _, n in where)
    offsets = torch.arange(longest, device=packed.device)
    rows = torch.tensor([r for r, _, _ in where], device=packed.device)[:, None].expand(-1, longest)
    starts = torch.tensor([s for _, s, _ in where], device=packed.device)[:, None]
    lengths = torch.tensor([n for _, _, n in where], device=packed.device)[:, None]
    columns = (starts + offsets).clamp(max=packed.size(1) - 1)  # (n, longest)
    values = packed[rows, columns]
    inside = (offsets < lengths).view(len(where), longest, *([1] * (packed.dim() - 2)))
    return values * inside
