//! The step graph: cycle detection (with the cycle's path) and topological
//! layers. Steps are indices; `deps[i]` lists the steps `i` needs.

/// A cycle as step indices, first repeated at the end (`[a, b, a]`: `a`
/// needs `b`, which needs `a`), starting from the lowest index in the graph
/// that reaches a cycle. `None` when the graph is acyclic.
pub(crate) fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let n = deps.len();
    let mut mark = vec![Mark::New; n];
    for start in 0..n {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next edge to visit); `path` is the stack.
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::Active;
        while let Some(&mut (node, ref mut edge)) = stack.last_mut() {
            if let Some(&next) = deps[node].get(*edge) {
                *edge += 1;
                match mark[next] {
                    Mark::New => {
                        mark[next] = Mark::Active;
                        stack.push((next, 0));
                    }
                    Mark::Active => {
                        let from = stack.iter().position(|&(s, _)| s == next).unwrap_or(0);
                        let mut cycle: Vec<usize> = stack[from..].iter().map(|&(s, _)| s).collect();
                        cycle.push(next);
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

/// Kahn's algorithm by levels: layer 0 holds the steps that need nothing,
/// layer k the steps whose last dependency is in layer k-1. Each layer is
/// sorted (file order). The graph must be acyclic; steps on a cycle are left
/// out.
pub(crate) fn layers(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = deps.len();
    let mut level: Vec<Option<usize>> = vec![None; n];
    let mut remaining: Vec<usize> = (0..n).collect();
    let mut out: Vec<Vec<usize>> = Vec::new();
    while !remaining.is_empty() {
        let layer: Vec<usize> = remaining
            .iter()
            .copied()
            .filter(|&i| deps[i].iter().all(|&d| level[d].is_some()))
            .collect();
        if layer.is_empty() {
            break;
        }
        for &i in &layer {
            level[i] = Some(out.len());
        }
        remaining.retain(|i| level[*i].is_none());
        out.push(layer);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_path_starts_and_ends_at_the_same_step() {
        // 0 -> 1 -> 2 -> 1
        let deps = vec![vec![1], vec![2], vec![1]];
        assert_eq!(find_cycle(&deps), Some(vec![1, 2, 1]));
        assert_eq!(find_cycle(&[vec![0]]), Some(vec![0, 0]));
        assert_eq!(find_cycle(&[vec![], vec![0], vec![0, 1]]), None);
    }

    #[test]
    fn layers_group_independent_steps() {
        // 0, 1 roots; 2 needs 0; 3 needs 1 and 2; 4 needs 0.
        let deps = vec![vec![], vec![], vec![0], vec![1, 2], vec![0]];
        assert_eq!(layers(&deps), vec![vec![0, 1], vec![2, 4], vec![3]]);
    }
}
