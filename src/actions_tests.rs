//! Tests of actions: placeholders fill one argument and are not re-parsed, control characters
//! become marks, bad templates are named, and output is cut and made inert.

use super::*;

fn ctx(account: &str) -> ActionContext {
    ActionContext {
        ip: "203.0.113.7".parse().unwrap(),
        network: None,
        prefix: Some("203.0.113.0/24".parse().unwrap()),
        account: Some(account.into()),
        count: 12,
        service: "exim".into(),
    }
}

fn fill(t: &str, c: &ActionContext) -> String {
    expand(&parse_template(t).unwrap(), c)
}

#[test]
fn placeholders_fill_one_argument_and_are_not_reparsed() {
    let c = ctx("{ip} $(x) a b");
    assert_eq!(fill("{ip}", &c), "203.0.113.7");
    assert_eq!(fill("--net={prefix}", &c), "--net=203.0.113.0/24");
    assert_eq!(fill("{network}", &c), "203.0.113.7/32");
    let subnet = ActionContext {
        ip: "2001:db8:1:2::".parse().unwrap(),
        network: Some("2001:db8:1:2::/64".parse().unwrap()),
        ..c.clone()
    };
    assert_eq!(fill("{network}", &subnet), "2001:db8:1:2::/64");
    assert!(uses_ip("--ip={ip}") && !uses_ip("{network} {{ip}}"));
    assert_eq!(fill("user={account};", &c), "user={ip} $(x) a b;");
    assert_eq!(fill("{count}x{service}", &c), "12xexim");
    assert_eq!(fill("{{ip}}", &c), "{ip}");
    assert_eq!(fill("a}}b{{", &c), "a}b{");
    let none = ActionContext {
        account: None,
        prefix: None,
        ..c
    };
    assert_eq!(fill("[{account}|{prefix}]", &none), "[|]");
}

#[test]
fn control_characters_become_marks() {
    assert_eq!(fill("{account}", &ctx("a\nb\0c")), "a<U+000A>b<U+0000>c");
}

#[test]
fn bad_templates_are_named() {
    assert!(validate_arg("{user}").unwrap_err().contains("{user}"));
    assert!(validate_arg("{ip").unwrap_err().contains("not closed"));
    assert!(validate_arg("a}b").unwrap_err().contains("no opening"));
    assert!(validate_arg("ip}").is_err());
    assert!(validate_arg("{}").is_err());
    assert!(validate_arg("é{ip}").is_ok());
}

#[test]
fn output_is_cut_and_inert() {
    let mut s = String::new();
    for i in 0..10 {
        s.push_str(&format!("line {i}\n"));
    }
    let out = summarize_output(s.as_bytes());
    assert_eq!(out.lines().count(), MAX_OUTPUT_LINES + 1);
    assert!(out.ends_with("[... more output cut]"));
    let out = summarize_output(b"\x1b[31mred http://x\n");
    assert_eq!(out, "<U+001B>[31mred hxxp://x");
    let long = "x".repeat(1000);
    let out = summarize_output(long.as_bytes());
    assert_eq!(out.chars().count(), MAX_OUTPUT_LINE_CHARS + 6);
}
